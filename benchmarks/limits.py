"""What limits cost: reads and writes of a store with `max_size` against one without, and
how fast eviction culls (issue 19).

1. Small values (~1 KB), async, SQLite and files: a retrieve hit and a store, on a store
   with ``max_size="10GB"`` (never reached: only the bookkeeping is paid — reads noted,
   writes counted, a look at the store's usage every 1 GB written) against the same store
   without limits; interleaved rounds in one run, medians, ratio limited / unlimited.
   The hits re-read 2,000 entries, so each is noted once per minute at most (as a cache's
   hot entries are); ``cold hits`` read entries never read before, each noted (a batch
   written every 1,024).
2. ``warm`` over a sweep that is all stored, reading each entry to find bad ones (the
   default, ``check_stored=True``) against trusting existence (one query per chunk).
3. Eviction: 10,000 entries of ~1 KB, then one store into ``max_entries=100`` (the
   trim lists the store, reads the read times and deletes 9,910 least recently used
   entries, each under its lock): entries evicted per second.

python benchmarks/limits.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from adatastore import AsyncDataStore, AsyncShelveDataStore, AsyncSQLiteDataStore


class Component:
    def __init__(self, n: int) -> None:
        self.parameters, self.input, self.version = {"n": n}, None, 1


VALUE = {"spikes": list(range(100)), "label": "x" * 200}
MAKERS: dict[str, Callable[..., AsyncDataStore]] = {
    "SQLite": lambda where, **options: AsyncSQLiteDataStore(Path(where) / "s.db", **options),
    "files": lambda where, **options: AsyncShelveDataStore(Path(where) / "files", **options),
}


async def micros(function: Callable[[int], Awaitable[object]], count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        await function(i)
    return (time.perf_counter() - started) / count * 1e6


async def per_operation(kind: str, count: int, rounds: int) -> list[list[str]]:
    rows = []
    with tempfile.TemporaryDirectory() as plain_dir, tempfile.TemporaryDirectory() as limit_dir:
        plain = MAKERS[kind](plain_dir)
        limited = MAKERS[kind](limit_dir, max_size="10GB")
        async with plain, limited:
            for store in (plain, limited):
                await store.store_many([(Component(i), "v", VALUE) for i in range(count)])
            components = [Component(i) for i in range(count)]
            cold = iter(range(count, 10**9))
            for store in (plain, limited):  # entries for the cold reads
                await store.store_many(
                    [(Component(i), "v", VALUE) for i in range(count, count * (rounds + 2))]
                )
            results: dict[tuple[str, str], list[float]] = {}
            pair = [("unlimited", plain), ("max_size", limited)]
            for round_number in range(rounds):
                # each round in the other order (ABBA): what the first of a round pays
                # (the page cache, writeback of the other's files) is shared out
                for name, store in pair if round_number % 2 == 0 else pair[::-1]:

                    async def hit(i: int, store: AsyncDataStore = store) -> Any:
                        return await store.retrieve(components[i], "v")

                    async def put(i: int, store: AsyncDataStore = store) -> Any:
                        return await store.store(components[i], "v", VALUE)

                    start = next(cold)
                    for _ in range(count - 1):
                        next(cold)

                    async def cold_hit(
                        i: int, store: AsyncDataStore = store, start: int = start
                    ) -> Any:
                        return await store.retrieve(Component(start + i), "v")

                    for operation, function in (("hit", hit), ("store", put)):
                        results.setdefault((operation, name), []).append(
                            await micros(function, count)
                        )
                    results.setdefault(("cold hit", name), []).append(await micros(cold_hit, count))
            for operation in ("hit", "cold hit", "store"):
                unlimited = statistics.median(results[operation, "unlimited"])
                limited_us = statistics.median(results[operation, "max_size"])
                spread = results[operation, "max_size"]
                rows.append(
                    [
                        f"{kind} {operation}",
                        f"{unlimited:.1f}",
                        f"{limited_us:.1f} ({min(spread):.1f}-{max(spread):.1f})",
                        f"{limited_us / unlimited:.2f}x",
                    ]
                )
    return rows


async def eviction(kind: str, count: int) -> list[str]:
    with tempfile.TemporaryDirectory() as where:
        async with MAKERS[kind](where) as store:
            for start in range(0, count, 1000):
                await store.store_many(
                    [(Component(i), "v", VALUE) for i in range(start, min(count, start + 1000))]
                )
        async with MAKERS[kind](where, max_entries=100) as store:
            started = time.perf_counter()
            await store.store(Component(-1), "v", VALUE)  # the first write looks: culls
            seconds = time.perf_counter() - started
            evicted = store.stats.evicted
            left = len(await store.list_contents())
    rate = evicted / seconds
    return [kind, f"{count:,}", f"{evicted:,}", f"{left}", f"{seconds:.2f}", f"{rate:,.0f}"]


async def rewarm(kind: str, count: int, rounds: int) -> list[str]:
    """A warm-up over a sweep already stored: with `check_stored` (each entry read and
    decoded, so bad ones are computed again) against existence only."""
    with tempfile.TemporaryDirectory() as where:
        async with MAKERS[kind](where) as store:
            components = [Component(i) for i in range(count)]
            await store.store_many([(component, "v", VALUE) for component in components])
            times: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(rounds):
                for check in (True, False):
                    started = time.perf_counter()
                    report = await store.warm(components, "v", repr, check_stored=check)
                    times[check].append(time.perf_counter() - started)
                    assert report.already_stored == count
    checked, trusted = statistics.median(times[True]), statistics.median(times[False])
    return [
        kind,
        f"{count:,}",
        f"{trusted * 1e3:.0f}",
        f"{checked * 1e3:.0f}",
        f"{checked / trusted:.2f}x",
        f"{(checked - trusted) / count * 1e6:.0f}",
    ]


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


async def main(quick: bool) -> None:
    count, rounds = (300, 3) if quick else (2000, 7)
    rows = []
    for kind in MAKERS:
        rows += await per_operation(kind, count, rounds)
    table(
        f"Small values with max_size set vs unset (µs per operation, medians of {rounds} "
        f"rounds of {count})",
        ["operation", "unlimited", "max_size=10GB (min-max)", "ratio"],
        rows,
    )
    table(
        "warm over a stored sweep: check_stored=True (the default) vs False",
        ["back-end", "entries", "existence (ms)", "checked (ms)", "ratio", "µs per entry"],
        [await rewarm(kind, count * 5, rounds) for kind in MAKERS],
    )
    culled = 1000 if quick else 10_000
    table(
        "Eviction: one store into max_entries=100",
        ["back-end", "entries", "evicted", "left", "seconds", "entries/s"],
        [await eviction(kind, culled) for kind in MAKERS],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    anyio.run(main, parser.parse_args().quick)
