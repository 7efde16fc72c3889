"""Concurrency on one store, and warm-up against the ideal.

1. 32 tasks sharing one async store, each storing then retrieving its own entries,
   against the same operations awaited one after another (wall ms; lower is better).
2. ``warm`` of 1,000 components (+10% repeats, computed once) with async computes of
   10 ms at concurrency 50, against the ideal wall time (distinct x 10 ms / 50) and
   against a bare event loop running the same sleeps with no store at all.
3. ``warm`` of 5,000 trivial components with ``progress=True`` against without (the
   bar's output goes to a string buffer: what is measured is the bar's own cost, which
   used to be 3x the warm-up's; the target is 1.1x).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio
from harness import Component, Table, small_value

from adatastore import (
    AsyncDataStore,
    AsyncMemoryDataStore,
    AsyncShelveDataStore,
    AsyncSQLiteDataStore,
)

TASKS = 32


def _makers(root: Path) -> dict[str, Callable[[str], AsyncDataStore]]:
    return {
        "memory": lambda tag: AsyncMemoryDataStore(),
        "files": lambda tag: AsyncShelveDataStore(root / f"files-{tag}"),
        "SQLite": lambda tag: AsyncSQLiteDataStore(root / f"{tag}.db"),
    }


def run_concurrency(rounds: int, per_task: int) -> list[Table]:
    table = Table(
        f"{TASKS} tasks on one store, {per_task} stores + {per_task} retrieves each (~1 KB)",
        "ms wall",
    )
    with tempfile.TemporaryDirectory(prefix="adatastore-bench-") as name:
        makers = _makers(Path(name))
        for round_number in range(rounds):
            for backend, make in makers.items():
                for mode in ("sequential", "concurrent"):
                    tag = f"{backend}-{mode}-{round_number}"
                    seconds = anyio.run(_one_concurrency, make(tag), mode, per_task)
                    table.add(f"{backend}: {mode}", seconds * 1e3)
    return [table]


async def _one_concurrency(store: AsyncDataStore, mode: str, per_task: int) -> float:
    async with store:

        async def work(task: int) -> None:
            components = [Component({"task": task, "i": i}) for i in range(per_task)]
            for i, component in enumerate(components):
                await store.store(component, "v", small_value(i))
            for component in components:
                await store.retrieve(component, "v")

        start = time.perf_counter()
        if mode == "sequential":
            for task in range(TASKS):
                await work(task)
        else:
            async with anyio.create_task_group() as group:
                for task in range(TASKS):
                    group.start_soon(work, task)
        return time.perf_counter() - start


def run_warm(rounds: int, distinct: int) -> list[Table]:
    delay, concurrency = 0.010, 50
    ideal = distinct * delay / concurrency
    table = Table(
        f"warm: {distinct:,} components (+10% repeats), 10 ms async computes, "
        f"concurrency {concurrency}",
        "x ideal wall time",
        note=f"Ideal: {distinct:,} x 10 ms / {concurrency} = {ideal * 1e3:.0f} ms.",
    )
    with tempfile.TemporaryDirectory(prefix="adatastore-bench-") as name:
        makers = _makers(Path(name))
        for round_number in range(rounds):
            table.add(
                "bare event loop (the sleeps alone, no store)",
                anyio.run(_bare_loop, distinct, delay, concurrency) / ideal,
            )
            for backend, make in makers.items():
                seconds = anyio.run(
                    _one_warm, make(f"warm-{backend}-{round_number}"), distinct, delay, concurrency
                )
                table.add(f"ours: {backend}", seconds / ideal)
    return [table]


async def _bare_loop(distinct: int, delay: float, concurrency: int) -> float:
    work = iter(range(distinct))

    async def worker() -> None:
        for _ in work:
            await anyio.sleep(delay)

    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(worker)
    return time.perf_counter() - start


async def _one_warm(store: AsyncDataStore, distinct: int, delay: float, concurrency: int) -> float:
    calls: Counter[int] = Counter()

    async def compute(component: Component) -> list[float]:
        calls[int(component.parameters["n"])] += 1
        await anyio.sleep(delay)
        return [float(component.parameters["n"])] * 100

    components = [Component({"n": n, "model": {"tau": 20.0}}) for n in range(distinct)]
    components += [Component({"n": n, "model": {"tau": 20.0}}) for n in range(0, distinct, 10)]
    async with store:
        start = time.perf_counter()
        report = await store.warm(components, "result", compute, concurrency=concurrency)
        elapsed = time.perf_counter() - start
    if report.computed != distinct or set(calls.values()) != {1} or len(calls) != distinct:
        raise AssertionError(f"warm computed something twice or not at all: {report}")
    return elapsed


def run_progress(rounds: int, count: int) -> list[Table]:
    table = Table(
        f"warm of {count:,} trivial components, memory store: with a progress bar",
        "ms",
        baseline="without a bar",
    )
    components = [Component({"n": n}) for n in range(count)]
    for _ in range(rounds):
        for label, progress in (("without a bar", False), ("progress=True", True)):
            table.add(label, anyio.run(_warm_trivial, components, progress) * 1000)
    return [table]


async def _warm_trivial(components: list[Component], progress: bool) -> float:
    stream = io.StringIO()
    async with AsyncMemoryDataStore() as store:
        with contextlib.redirect_stderr(stream):
            start = time.perf_counter()
            report = await store.warm(components, "v", _trivial, progress=progress)
            elapsed = time.perf_counter() - start
    if report.computed != len(components):
        raise AssertionError(f"warm did not compute everything: {report}")
    return elapsed


def _trivial(component: Component) -> int:
    return 1


def run(rounds: int, per_task: int, distinct: int, trivial: int = 5_000) -> list[Table]:
    return (
        run_concurrency(rounds, per_task)
        + run_warm(rounds, distinct)
        + run_progress(rounds, trivial)
    )


__all__ = ["run", "run_concurrency", "run_progress", "run_warm"]
