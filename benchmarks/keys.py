"""Key making: canonical_hash (our default) against joblib.hash and sha1(pickle.dumps(...))
for ParameterSets of 10, 1,000 and 100,000 leaves (µs per key).

sha1(pickle) is fast but not canonical (insertion order and float repr change it); it is
here as the floor. joblib.hash is what joblib.Memory uses.
"""

from __future__ import annotations

import hashlib
import pickle
from typing import Any

import joblib
from harness import Component, Table, micros_per_call

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


def run(rounds: int, leaf_counts: list[int]) -> list[Table]:
    tables = []
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
