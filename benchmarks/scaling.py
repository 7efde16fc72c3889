"""Does retrieve latency stay flat as the store grows? 10³, 10⁴ and 10⁵ entries.

    python benchmarks/scaling.py [--quick]

Fills a SQLite and a files store with small entries (in bulk), then times blocking
retrieves of random stored entries at each size. Printed: median µs per retrieve and the
ratio to the smallest size (target: at most 1.5 at 10⁵).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adatastore import ShelveDataStore, SQLiteDataStore, SyncDataStore


class Component:
    version = "1"

    def __init__(self, n: int) -> None:
        self.parameters = {"n": n}
        self.input = None


def latency(store: SyncDataStore[Any], size: int, calls: int, rounds: int) -> float:
    rng = random.Random(size)
    samples = []
    for _ in range(rounds):
        picks = [Component(rng.randrange(size)) for _ in range(calls)]
        start = time.perf_counter()
        for component in picks:
            store.retrieve(component, "v")
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = [100, 1_000] if args.quick else [1_000, 10_000, 100_000]
    calls, rounds = (50, 2) if args.quick else (500, 5)
    print(f"# retrieve latency as the store grows ({rounds} rounds of {calls}; medians)\n")
    print("| back-end | entries | µs per retrieve | ratio to smallest |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="adatastore-bench-") as name:
        makers: dict[str, Callable[[], SyncDataStore[Any]]] = {
            "sqlite": lambda: SQLiteDataStore(Path(name) / "s.db"),
            "files": lambda: ShelveDataStore(Path(name) / "files"),
        }
        for backend, make in makers.items():
            with make() as store:
                filled, first = 0, 0.0
                for size in sizes:
                    batch = [
                        (Component(n), "v", {"n": n, "data": "x" * 200})
                        for n in range(filled, size)
                    ]
                    for start in range(0, len(batch), 5_000):
                        store.store_many(batch[start : start + 5_000])
                    filled = size
                    micros = latency(store, size, calls, rounds)
                    first = first or micros
                    print(f"| {backend} | {size:,} | {micros:.1f} | {micros / first:.2f} |")


if __name__ == "__main__":
    main()
