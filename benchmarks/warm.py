"""Warm-up against the ideal: 1,000 components, async computes of 10 ms, concurrency 50.

    python benchmarks/warm.py [--quick]

10% of the components are repeated (they must be computed once). The ideal wall time is
distinct components x 10 ms / 50. Printed: wall time, ratio to ideal, computations.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from adatastore import (
    AsyncDataStore,
    AsyncMemoryDataStore,
    AsyncShelveDataStore,
    AsyncSQLiteDataStore,
)


class Component:
    version = "1"

    def __init__(self, n: int) -> None:
        self.parameters: dict[str, Any] = {"n": n, "model": {"tau": 20.0, "rate": 5.0}}
        self.input = None


async def one_run(store: AsyncDataStore, distinct: int, delay: float) -> tuple[float, int]:
    calls: Counter[int] = Counter()

    async def compute(component: Component) -> list[float]:
        calls[int(component.parameters["n"])] += 1
        await anyio.sleep(delay)
        return [float(component.parameters["n"])] * 100

    components = [Component(n) for n in range(distinct)]
    components += [Component(n) for n in range(0, distinct, 10)]  # 10% duplicates
    start = time.perf_counter()
    report = await store.warm(components, "result", compute, concurrency=50)
    elapsed = time.perf_counter() - start
    assert report.computed == distinct, report
    assert all(count == 1 for count in calls.values())
    assert len(calls) == distinct
    return elapsed, sum(calls.values())


async def main(rounds: int, distinct: int) -> None:
    delay = 0.010
    ideal = distinct * delay / 50
    print(
        f"# warm: {distinct} distinct components (+10% repeats), 10 ms async computes, "
        f"concurrency 50; ideal {ideal:.3f} s; {rounds} rounds, medians\n"
    )
    print("| store | wall s | spread | ratio to ideal | computations |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="adatastore-bench-") as name:
        root = Path(name)
        makers: dict[str, Callable[[int], AsyncDataStore]] = {
            "memory": lambda i: AsyncMemoryDataStore(),
            "files": lambda i: AsyncShelveDataStore(root / f"files{i}"),
            "sqlite": lambda i: AsyncSQLiteDataStore(root / f"s{i}.db"),
        }
        for label, make in makers.items():
            times, computations = [], 0
            for i in range(rounds):
                async with make(i) as store:
                    elapsed, computations = await one_run(store, distinct, delay)
                    times.append(elapsed)
            median = statistics.median(times)
            print(
                f"| {label} | {median:.3f} | {min(times):.3f}-{max(times):.3f} | "
                f"{median / ideal:.2f} | {computations} |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    arguments = parser.parse_args()
    anyio.run(main, *((1, 200) if arguments.quick else (5, 1000)), backend="asyncio")
