"""Key making: canonical_hash (our default) against joblib.hash and sha1(pickle.dumps(...))
for ParameterSets of 10, 1,000 and 100,000 leaves (µs per key); and `explain` along a
chain of time steps (each step the input of the next), which must stay linear in the
chain's length (issue 13: 2,000 steps took 208 s in 0.2.0; the target is 1 s).

sha1(pickle) is fast but not canonical (insertion order and float repr change it); it is
here as the floor. joblib.hash is what joblib.Memory uses.
"""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import time
from typing import Any

import joblib
from harness import Component, Table, micros_per_call

from adatastore import AsyncMemoryDataStore
from adatastore.keygenerators import canonical_hash


def parameters(leaves: int) -> dict[str, Any]:
    """A tree of groups of 100 leaves (ints, floats and strings mixed)."""
    groups = max(1, leaves // 100)
    per_group = leaves // groups
    return {
        f"group{g}": {
            f"p{i}": (i * 0.5 if i % 3 == 0 else (i if i % 3 == 1 else f"s{i}"))
            for i in range(per_group)
        }
        for g in range(groups)
    }


def run(rounds: int, leaf_counts: list[int], chains: tuple[int, ...] = ()) -> list[Table]:
    tables = []
    if chains:
        explain = Table("explain along a chain of time steps (a miss)", "seconds per explain")
        for _ in range(rounds):
            for length in chains:
                explain.add(f"ours: {length:,} steps", asyncio.run(_explain_chain(length)))
        tables.append(explain)
    for leaves in leaf_counts:
        tree = parameters(leaves)
        component = Component(tree)
        calls = max(1, 20_000 // leaves)
        table = Table(f"Key for a {leaves:,}-leaf ParameterSet", "µs per key", "joblib.hash")
        for _ in range(rounds):
            _one_round(table, component, tree, calls)
        tables.append(table)
    return tables


def _one_round(table: Table, component: Component, tree: dict[str, Any], calls: int) -> None:
    table.add("ours: canonical_hash", micros_per_call(lambda _: canonical_hash(component), calls))
    table.add("joblib.hash", micros_per_call(lambda _: joblib.hash(tree), max(1, calls // 4)))
    table.add(
        "sha1(pickle.dumps)",
        micros_per_call(
            lambda _: hashlib.sha1(pickle.dumps(component.parameters)).hexdigest(), calls
        ),
    )


async def _explain_chain(length: int) -> float:
    """Seconds to explain a miss at the end of a stored chain of `length` steps."""
    steps: list[Component] = []
    for step in range(length):
        steps.append(Component({"step": step, "dt": 0.1}, input=steps[-1] if steps else None))
    async with AsyncMemoryDataStore() as store:
        await store.store_many([(step, "state", None) for step in steps])
        asked = Component({"step": length, "dt": 0.1}, input=steps[-1])
        start = time.perf_counter()
        explained = await store.explain(asked, "state")
        seconds = time.perf_counter() - start
    assert not explained.hit
    return seconds
