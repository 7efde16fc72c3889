"""Two checkouts of adatastore side by side: the small-value operations of each, as ratios.

    python benchmarks/checkouts.py OLD_SRC NEW_SRC [--rounds 9] [--count 2000]

OLD_SRC and NEW_SRC are ``src`` directories of two checkouts (``git worktree add`` one
for the old commit). Each round runs one worker process per checkout, in alternating
order, so drift of the shared machine hits both alike; every worker measures each
operation on fresh stores of its own checkout (1 KB values, `count` keys: async and
blocking store and retrieve hits on SQLite and files, async hits on memory). The table
gives medians, spreads and new/old ratios: the cost of a change in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def measure_large(megabytes: int) -> dict[str, float]:
    """GB/s of blocking stores and retrieves of one large array (fresh files each)."""
    import numpy as np

    sys.path.insert(0, str(HERE))
    from harness import Component

    import adatastore

    array = np.random.default_rng(0).standard_normal(megabytes * 2**20 // 8)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="adatastore-checkouts-") as name:
        root = Path(name)
        stores: list[tuple[str, Any]] = [
            ("SQLite", adatastore.SQLiteDataStore(root / "large.db")),
            ("files", adatastore.ShelveDataStore(root / "large-files")),
        ]
        for label, store in stores:
            component = Component({"large": label})
            start = time.perf_counter()
            store.store(component, "v", array)
            results[f"{megabytes} MB store GB/s: {label}"] = (
                array.nbytes / (time.perf_counter() - start) / 1e9
            )
            start = time.perf_counter()
            back = store.retrieve(component, "v")
            results[f"{megabytes} MB retrieve GB/s: {label}"] = (
                array.nbytes / (time.perf_counter() - start) / 1e9
            )
            assert back.shape == array.shape
            del back
            store.close()
    return results


def measure(count: int) -> dict[str, float]:
    """µs per operation of the checkout imported by this process."""
    sys.path.insert(0, str(HERE))
    from harness import Component, small_value

    import adatastore

    components = [Component({"i": i, "model": {"tau": 20.0, "cell": "iaf"}}) for i in range(count)]
    values = [small_value(i) for i in range(count)]
    results: dict[str, float] = {}

    def timed(operation: Callable[[int], object]) -> float:
        start = time.perf_counter()
        for i in range(count):
            operation(i)
        return (time.perf_counter() - start) / count * 1e6

    async def timed_async(operation: Callable[[int], Awaitable[object]]) -> float:
        start = time.perf_counter()
        for i in range(count):
            await operation(i)
        return (time.perf_counter() - start) / count * 1e6

    with tempfile.TemporaryDirectory(prefix="adatastore-checkouts-") as name:
        root = Path(name)
        blocking_stores: list[tuple[str, Any]] = [
            ("SQLite", adatastore.SQLiteDataStore(root / "blocking.db")),
            ("files", adatastore.ShelveDataStore(root / "blocking-files")),
        ]
        for label, blocking in blocking_stores:

            def store_blocking(i: int, s: Any = blocking) -> object:
                return s.store(components[i], "v", values[i])

            def retrieve_blocking(i: int, s: Any = blocking) -> object:
                return s.retrieve(components[i], "v")

            results[f"blocking store: {label}"] = timed(store_blocking)
            results[f"blocking retrieve hit: {label}"] = timed(retrieve_blocking)
            blocking.close()

        async def run_async() -> None:
            stores: list[tuple[str, Any]] = [
                ("SQLite", adatastore.AsyncSQLiteDataStore(root / "async.db")),
                ("files", adatastore.AsyncShelveDataStore(root / "async-files")),
                ("memory", adatastore.AsyncMemoryDataStore()),
            ]
            for label, store in stores:
                async with store:

                    def store_one(i: int, s: Any = store) -> Awaitable[object]:
                        return s.store(components[i], "v", values[i])  # type: ignore[no-any-return]

                    def retrieve_one(i: int, s: Any = store) -> Awaitable[object]:
                        return s.retrieve(components[i], "v")  # type: ignore[no-any-return]

                    results[f"async store: {label}"] = await timed_async(store_one)
                    results[f"async retrieve hit: {label}"] = await timed_async(retrieve_one)

        asyncio.run(run_async())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="src directory of the old checkout")
    parser.add_argument("new", type=Path, help="src directory of the new checkout")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument(
        "--large", type=int, default=0, help="also N MB stores and retrieves (GB/s)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:  # `old` is this worker's src directory
        sys.path.insert(0, str(arguments.old.resolve()))
        results = measure(arguments.count)
        if arguments.large:
            results.update(measure_large(arguments.large))
        print(json.dumps(results))
        return
    samples: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    for round_number in range(arguments.rounds):
        order = ["old", "new"] if round_number % 2 == 0 else ["new", "old"]
        for which in order:
            source = getattr(arguments, which)
            command = [sys.executable, __file__, str(source), str(source), "--worker"]
            output = subprocess.run(
                [*command, "--count", str(arguments.count), "--large", str(arguments.large)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            for operation, micros in json.loads(output).items():
                samples[which].setdefault(operation, []).append(micros)
    print(_table(samples, arguments))


def _table(samples: dict[str, dict[str, list[float]]], arguments: Any) -> str:
    lines = [
        f"### {arguments.count:,} small values (~1 KB), {arguments.rounds} rounds, "
        "µs per operation (lower is better; GB/s rows: higher is better)",
        "",
        "| operation | old median | old spread | new median | new spread | new / old |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for operation, old in samples["old"].items():
        new = samples["new"].get(operation)
        if not new:
            continue
        ratio = statistics.median(new) / statistics.median(old)
        lines.append(
            f"| {operation} | {statistics.median(old):.1f} | {min(old):.0f}-{max(old):.0f} | "
            f"{statistics.median(new):.1f} | {min(new):.0f}-{max(new):.0f} | {ratio:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
