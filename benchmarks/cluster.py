"""``warm(executor=...)`` measured: a Dask cluster against its own floor, the caller's
memory on a long sweep, and a rerun of a warmed sweep.

1. ``sweep``: 200 components x 50 ms of CPU on a 2-worker `LocalCluster` (processes, TCP
   on 127.0.0.1). ``warm`` (the workers store into SQLite) against a bare ``client.map``
   of the same function with no store (the engine's own floor), both as ratios to the
   ideal (200 x 50 ms / 2 workers). Target: warm <= 1.3x ideal.
2. ``memory``: the caller's peak RSS growth while warming 100,000 trivial components on
   a 2-process pool (SQLite; the workers store). Target: <= 50 MB. The components exist
   before the measurement (they are the caller's input).
3. ``rerun``: ``warm`` of a fully warmed 10,000-point sweep: no task is submitted (checked)
   and it takes <= 2 s.

python benchmarks/cluster.py [--quick] [--only sweep,memory,rerun]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from harness import Component

from adatastore import SQLiteDataStore

CPU_SECONDS = 0.05


def spin(component: Any) -> int:
    """50 ms of CPU: a simulation's work, not a wait."""
    deadline = time.process_time() + CPU_SECONDS
    while time.process_time() < deadline:
        pass
    return int(component.parameters["i"])


def trivial(component: Any) -> int:
    return int(component.parameters["i"])


def sweep(count: int, rounds: int) -> list[str]:
    from distributed import Client, LocalCluster

    components = [Component({"i": i}) for i in range(count)]
    ideal = count * CPU_SECONDS / 2
    times: dict[str, list[float]] = {"client.map, no store": [], "warm, workers store": []}
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
        tempfile.TemporaryDirectory(prefix="adatastore-bench-") as root,
    ):
        client.gather(client.map(spin, components[:4], pure=False))  # workers warmed up
        for round_ in range(rounds):
            start = time.perf_counter()
            client.gather(client.map(spin, components, pure=False))
            times["client.map, no store"].append(time.perf_counter() - start)
            with SQLiteDataStore(Path(root) / f"sweep{round_}.db") as store:
                start = time.perf_counter()
                report = store.warm(components, "value", spin, executor=client)
                times["warm, workers store"].append(time.perf_counter() - start)
                assert report.computed == count, report
    lines = [
        f"### {count} x {CPU_SECONDS * 1000:.0f} ms on a 2-worker LocalCluster ({rounds} rounds)",
        "",
        f"Ideal: {ideal:.2f} s.",
        "",
        "| variant | median s | spread | / ideal |",
        "|---|---:|---:|---:|",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(
            f"| {name} | {median:.2f} | {min(values):.2f}-{max(values):.2f} | "
            f"{median / ideal:.2f}x |"
        )
    floor, warm = (statistics.median(values) for values in times.values())
    lines += ["", f"warm / client.map: {floor and warm / floor:.2f}x", ""]
    return lines


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


class PeakRSS:
    """The highest resident set size seen while it runs (sampled every 5 ms)."""

    def __init__(self) -> None:
        self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def memory(count: int) -> list[str]:
    components = [Component({"i": i}) for i in range(count)]
    context = multiprocessing.get_context("fork")
    with (
        tempfile.TemporaryDirectory(prefix="adatastore-bench-") as root,
        SQLiteDataStore(Path(root) / "memory.db") as store,
        concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool,
    ):
        store.warm(components[:10], "value", trivial, executor=pool)  # pools started
        before = _rss()
        start = time.perf_counter()
        with PeakRSS() as peak:
            report = store.warm(components, "value", trivial, executor=pool)
        seconds = time.perf_counter() - start
        assert report.computed == count - 10, report
    growth = (peak.peak - before) / 2**20
    return [
        f"### Caller's memory: warm of {count:,} trivial components, 2-process pool, SQLite",
        "",
        "| peak RSS growth | limit | wall | per component |",
        "|---:|---:|---:|---:|",
        f"| {growth:.1f} MB | 50 MB | {seconds:.1f} s | {seconds / count * 1e6:.0f} us |",
        "",
    ]


def rerun(count: int) -> list[str]:
    components = [Component({"i": i}) for i in range(count)]
    with (
        tempfile.TemporaryDirectory(prefix="adatastore-bench-") as root,
        SQLiteDataStore(Path(root) / "rerun.db") as store,
        concurrent.futures.ThreadPoolExecutor(2) as pool,
    ):
        store.store_many((component, "value", 0) for component in components)
        context = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as processes:
            times = []
            for executor in (pool, processes, pool, processes):
                start = time.perf_counter()
                report = store.warm(components, "value", trivial, executor=executor)
                times.append(time.perf_counter() - start)
                assert (report.computed, report.already_stored) == (0, count), report
                assert not report.workers  # no task ran
    return [
        f"### Rerun of a warmed {count:,}-point sweep (nothing submitted)",
        "",
        "| executor | s | limit |",
        "|---|---:|---:|",
        f"| threads | {min(times[0], times[2]):.2f} | 2 s |",
        f"| processes (components pickled first) | {min(times[1], times[3]):.2f} | 2 s |",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="sweep,memory,rerun")
    args = parser.parse_args()
    only = set(args.only.split(","))
    started = time.perf_counter()
    print(f"# warm on executors{' (quick)' if args.quick else ''}\n")
    lines: list[str] = []
    if "sweep" in only:
        lines += sweep(20 if args.quick else 200, 1 if args.quick else 3)
    if "memory" in only:
        lines += memory(2_000 if args.quick else 100_000)
    if "rerun" in only:
        lines += rerun(1_000 if args.quick else 10_000)
    print("\n".join(lines))
    print(f"Whole run: {time.perf_counter() - started:.0f} s.")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
