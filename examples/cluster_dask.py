"""A parameter sweep on a Dask cluster, with the store as the meeting point.

    python examples/cluster_dask.py [STORE_URL] [SCHEDULER_ADDRESS]

The workers open the store themselves (from ``store.spec``), compute the trials that are
missing and store them; only a small summary per trial comes back here. Run it twice:
the second run finds every trial stored and submits nothing. Kill it half-way and run it
again: only what is missing is computed.

STORE_URL defaults to an SQLite file in the working directory (on a cluster: a database
server, ``django+postgresql://...?data_root_dir=/shared/dir``, a disk every node mounts,
or a bucket, ``s3://bucket/prefix``, with the AWS environment on every worker). Without
SCHEDULER_ADDRESS a `LocalCluster` of two worker processes starts here.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from distributed import Client, LocalCluster
from parameters import ParameterSet

from adatastore import open_store_sync


class Trial:
    version = "1.0"

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.parameters = ParameterSet(parameters)
        self.input = None


def simulate(trial: Trial) -> list[float]:
    """A stand-in for a long simulation (it runs on a worker)."""
    seed = int(trial.parameters["seed"])
    rate = float(trial.parameters["rate"])
    return [rate * ((seed * 7919 + i * 104729) % 1000) / 1000 for i in range(10_000)]


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "sqlite:///sweep.db"
    address = sys.argv[2] if len(sys.argv) > 2 else None
    sweep = [Trial({"seed": seed, "rate": rate}) for seed in range(20) for rate in (5.0, 10.0)]
    with contextlib.ExitStack() as stack:
        if address is None:
            cluster = stack.enter_context(
                LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=2, threads_per_worker=1, dashboard_address=None
                )
            )
            address = cluster.scheduler_address
        client = stack.enter_context(Client(address))  # type: ignore[no-untyped-call]
        store = stack.enter_context(open_store_sync(url))
        report = store.warm(sweep, "trace", simulate, executor=client)
        print(
            f"computed={report.computed} already_stored={report.already_stored} "
            f"failed={len(report.failed)} workers={len(report.workers)}"
        )
        trace = store.retrieve(sweep[3], "trace")
        print(f"trial 3: {len(trace)} samples, mean {sum(trace) / len(trace):.3f}")


if __name__ == "__main__":
    main()
