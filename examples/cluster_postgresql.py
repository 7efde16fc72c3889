"""Several worker processes (think: cluster nodes) sharing one cache in PostgreSQL.

    python examples/cluster_postgresql.py [DATABASE_URL] [DATA_DIR]

Each worker warms the same parameter sweep through the Django back-end; the per-entry
locks (PostgreSQL advisory locks) make every trial computed exactly once in the whole
"cluster", the other workers reading what the first stored. Large results go to files in
DATA_DIR (on a real cluster: a file system every node mounts), the database holds the
index. DATABASE_URL defaults to a local server
(``django+postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
from typing import Any

from parameters import ParameterSet

from adatastore import open_store_sync


class Trial:
    version = "1.0"

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.parameters = ParameterSet(parameters)
        self.input = None


def simulate(trial: Trial) -> list[float]:
    time.sleep(0.05)  # a long computation
    seed = int(trial.parameters["seed"])
    return [float((seed * 7919 + i * 104729) % 1000) for i in range(10_000)]


def worker(url: str, number: int, results: Any) -> None:
    store = open_store_sync(url)
    sweep = [Trial({"seed": seed, "model": "lif"}) for seed in range(24)]
    if number % 2:
        sweep.reverse()  # the workers meet in the middle
    report = store.warm(sweep, "trace", simulate, threads=4)  # numpy code: thread-safe
    results.put((number, report.computed, report.already_stored, len(report.failed)))
    store.close()


def main(url: str, data_dir: str) -> None:
    url = f"{url}{'&' if '?' in url else '?'}data_root_dir={data_dir}"
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=worker, args=(url, n, results)) for n in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=300)
    reports = sorted(results.get(timeout=5) for _ in workers)
    for number, computed, stored, failed in reports:
        print(f"worker {number}: computed={computed} already_stored={stored} failed={failed}")
    print(f"computed in all: {sum(r[1] for r in reports)} of 24 trials")


if __name__ == "__main__":
    main(
        sys.argv[1]
        if len(sys.argv) > 1
        else os.environ.get(
            "ADATASTORE_CLUSTER_URL", "django+postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(),
    )
