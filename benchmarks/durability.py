"""What `durable=True` costs: small and 10 MB stores, files and SQLite, side by side.

python benchmarks/durability.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adatastore import ShelveDataStore, SQLiteDataStore, SyncDataStore


class Component:
    version = "1"

    def __init__(self, parameters: dict[str, object]) -> None:
        self.parameters = parameters
        self.input = None


def per_store(store: SyncDataStore[Any], value: bytes, calls: int) -> float:
    start = time.perf_counter()
    for i in range(calls):
        store.store(Component({"i": i % 10}), "v", value)
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, calls = (2, 20) if args.quick else (5, 200)
    print(f"# durable=True cost ({rounds} rounds; medians)\n")
    print("| back-end | value | durable=False | durable=True | ratio |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="adatastore-bench-") as name:
        root = Path(name)
        makers: dict[str, Callable[[bool], SyncDataStore[Any]]] = {
            "files": lambda durable: ShelveDataStore(root / f"files-{durable}", durable=durable),
            "sqlite": lambda durable: SQLiteDataStore(root / f"s-{durable}.db", durable=durable),
        }
        for backend, make in makers.items():
            for label, value, count in (
                ("1 KB", b"x" * 1024, calls),
                ("10 MB", b"x" * 10_000_000, max(2, calls // 20)),
            ):
                results: dict[bool, list[float]] = {False: [], True: []}
                stores = {durable: make(durable) for durable in (False, True)}
                for _ in range(rounds):
                    for durable, store in stores.items():
                        results[durable].append(per_store(store, value, count))
                for store in stores.values():
                    store.close()
                fast, safe = (statistics.median(results[d]) for d in (False, True))
                print(
                    f"| {backend} | {label} | {fast * 1e6:.0f} µs | {safe * 1e6:.0f} µs | "
                    f"{safe / fast:.1f} |"
                )


if __name__ == "__main__":
    main()
