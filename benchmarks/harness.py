"""What every workload of the suite shares: samples, tables of medians and ratios, targets.

A `Table` collects samples per variant (one per round: the variants of a round run one
after another, rounds repeat), and prints medians, spreads and the ratio of each variant to
a baseline. A `Target` is one promise of issue 7 checked against a ratio of one run.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from parameters import ParameterSet


class Component:
    """A component as users write them: a ParameterSet, an input, a version."""

    version = "1"

    def __init__(self, parameters: dict[str, Any], input: object = None) -> None:
        self.parameters = ParameterSet(parameters)
        self.input = input


def small_value(i: int) -> dict[str, Any]:
    """About 1 KB pickled: a name and 100 floats."""
    return {"name": f"population {i}", "rates": [i + k / 100 for k in range(100)]}


@dataclass
class Table:
    """Samples per variant; the markdown shows medians and ratios to `baseline`."""

    title: str
    unit: str
    baseline: str | None = None
    higher_is_better: bool = False
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, variant: str, value: float) -> None:
        self.samples.setdefault(variant, []).append(value)

    def median(self, variant: str) -> float:
        return statistics.median(self.samples[variant])

    def markdown(self) -> str:
        direction = "higher" if self.higher_is_better else "lower"
        lines = [f"### {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        header = f"| variant | median {self.unit} ({direction} is better) | spread |"
        rule = "|---|---:|---:|"
        if self.baseline:
            header += f" ratio to {self.baseline} |"
            rule += "---:|"
        lines += [header, rule]
        for variant, values in self.samples.items():
            row = f"| {variant} | {_number(self.median(variant))} | "
            row += f"{_number(min(values))}-{_number(max(values))} |"
            if self.baseline:
                row += f" {self.median(variant) / self.median(self.baseline):.2f} |"
            lines.append(row)
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "unit": self.unit,
            "baseline": self.baseline,
            "higher_is_better": self.higher_is_better,
            "medians": {variant: self.median(variant) for variant in self.samples},
            "samples": self.samples,
        }


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@dataclass
class Target:
    """One target of issue 7: `measured` against `limit` (at most, or at least)."""

    name: str
    measured: float
    limit: float
    at_least: bool = False
    unit: str = "x"
    how: str = ""

    @property
    def met(self) -> bool:
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    def row(self) -> str:
        sign = "≥" if self.at_least else "≤"
        verdict = "met" if self.met else "**not met**"
        return (
            f"| {self.name} | {sign} {_number(self.limit)}{self.unit} | "
            f"{_number(self.measured)}{self.unit} | {verdict} | {self.how} |"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "measured": self.measured,
            "limit": self.limit,
            "at_least": self.at_least,
            "unit": self.unit,
            "met": self.met,
        }


def targets_markdown(targets: list[Target]) -> str:
    lines = [
        "### Targets",
        "",
        "| target | limit | measured | | how it is measured |",
        "|---|---:|---:|---|---|",
    ]
    lines += [target.row() for target in targets]
    return "\n".join(lines) + "\n"


def micros_per_call(function: Callable[[int], object], count: int) -> float:
    """Microseconds per call of `function(i)` for i in range(count)."""
    start = time.perf_counter()
    for i in range(count):
        function(i)
    return (time.perf_counter() - start) / count * 1e6


async def micros_per_call_async(function: Callable[[int], Awaitable[object]], count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        await function(i)
    return (time.perf_counter() - start) / count * 1e6


class Loop:
    """One asyncio loop kept for a whole workload, driven with `run` from plain code
    (so async and blocking variants interleave in one round)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
