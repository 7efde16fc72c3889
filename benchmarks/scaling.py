"""Does retrieve latency stay flat as the store grows? 10³, 10⁴ and 10⁵ entries.

Fills a SQLite and a files store with small entries (in bulk), then times blocking
retrieves of random stored entries at each size (µs per retrieve).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import Component, Table

from adatastore import ShelveDataStore, SQLiteDataStore, SyncDataStore


def run(rounds: int, sizes: list[int], calls: int) -> list[Table]:
    table = Table(
        "Retrieve latency as the store grows (blocking API, random stored entries)",
        "µs per retrieve",
    )
    with tempfile.TemporaryDirectory(prefix="adatastore-bench-") as name:
        makers: dict[str, Callable[[], SyncDataStore[Any]]] = {
            "SQLite": lambda: SQLiteDataStore(Path(name) / "s.db"),
            "files": lambda: ShelveDataStore(Path(name) / "files"),
        }
        for backend, make in makers.items():
            with make() as store:
                filled = 0
                for size in sizes:
                    for start in range(filled, size, 5_000):
                        store.store_many(
                            [
                                (Component({"n": n}), "v", {"n": n, "data": "x" * 200})
                                for n in range(start, min(size, start + 5_000))
                            ]
                        )
                    filled = size
                    rng = random.Random(size)
                    for _ in range(rounds):
                        picks = [Component({"n": rng.randrange(size)}) for _ in range(calls)]
                        start_time = time.perf_counter()
                        for component in picks:
                            store.retrieve(component, "v")
                        micros = (time.perf_counter() - start_time) / calls * 1e6
                        table.add(f"{backend}: {size:,} entries", micros)
    return table_with_ratios(table, sizes)


def table_with_ratios(table: Table, sizes: list[int]) -> list[Table]:
    """The latency table, and the ratio of each size to the smallest per back-end."""
    ratios = Table("Retrieve latency: ratio to the smallest store", "x latency at smallest")
    for backend in ("SQLite", "files"):
        first = table.median(f"{backend}: {sizes[0]:,} entries")
        for size in sizes:
            ratios.add(
                f"{backend}: {size:,} entries",
                statistics.median(table.samples[f"{backend}: {size:,} entries"]) / first,
            )
    return [table, ratios]
