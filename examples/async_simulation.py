"""An asyncio simulation that awaits the store: a parameter sweep warmed concurrently.

    python examples/async_simulation.py [STORE_URL]

Each trial is a component; `warm` computes the missing ones (at most 8 at a time, each
once even with repeats in the sweep) and stores them; `get_or_compute` then serves one
trial, and `explain` says why a trial with a changed parameter is not stored. Without
STORE_URL the store is an SQLite file in a temporary directory. Run it twice on the same
store: the second run computes nothing.
"""

from __future__ import annotations

import asyncio
import math
import sys
import tempfile
from typing import Any

from parameters import ParameterSet

from adatastore import open_store


class Trial:
    """One simulated trial: a damped oscillator's trajectory for one set of parameters."""

    version = "1.0"

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.parameters = ParameterSet(parameters)
        self.input = None


async def simulate(trial: Trial) -> list[float]:
    """Stands in for a long computation (a simulator run by a subprocess, a GPU job...)."""
    p = trial.parameters
    await asyncio.sleep(0.01)
    return [
        math.exp(-p.damping * t * p.dt) * math.cos(p.frequency * t * p.dt)
        for t in range(int(p.steps))
    ]


async def main(url: str) -> None:
    sweep = [
        Trial({"frequency": f, "damping": d, "dt": 0.01, "steps": 500})
        for f in (1.0, 2.0, 3.0, 4.0)
        for d in (0.1, 0.2, 0.5)
    ]
    sweep += sweep[:3]  # repeats are computed once
    async with await open_store(url) as store:
        report = await store.warm(sweep, "trajectory", simulate, concurrency=8)
        print(
            f"warm: computed={report.computed} already_stored={report.already_stored} "
            f"duplicates={report.duplicates} failed={len(report.failed)}"
        )
        first = sweep[0]
        trajectory = await store.get_or_compute(first, "trajectory", lambda: simulate(first))
        print(f"trial 0: {len(trajectory)} steps, last value {trajectory[-1]:.6f}")
        changed = Trial({"frequency": 1.0, "damping": 0.15, "dt": 0.01, "steps": 500})
        print(await store.explain(changed, "trajectory", limit=1))
        print(f"stats: {store.stats}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp() + "/sweep.db"))
