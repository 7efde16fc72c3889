"""A small simulation pipeline whose second run is served from the store.

    stimulus (Poisson spike trains) -> network (leaky integrate-and-fire neurons)
                                    -> analysis (firing rates and their spread)

Each stage is a component: its parameters, its input and its version decide its key, so
changing any parameter upstream makes everything downstream a miss, and nothing else.

    python examples/pipeline.py [STORE_DIR]

Without STORE_DIR the store lives in a temporary directory. The pipeline runs twice and
prints, for each run, the wall time and the hits and misses of the store.
"""

from __future__ import annotations

import sys
import tempfile
import time
from typing import Any

import anyio
import numpy as np
from parameters import ParameterSet

from adatastore import AsyncDataStore, AsyncShelveDataStore


class Stimulus:
    """Independent Poisson spike trains, as a boolean array (inputs x time steps)."""

    version = "1.0"

    def __init__(self, parameters: ParameterSet) -> None:
        self.parameters = parameters
        self.input = None

    def compute(self) -> np.ndarray:
        p = self.parameters
        steps = int(p.duration / p.dt)
        rng = np.random.default_rng(p.seed)
        return np.asarray(rng.random((p.n_inputs, steps)) < p.rate * p.dt / 1000.0)


class Network:
    """A population of leaky integrate-and-fire neurons driven by the stimulus."""

    version = "1.2"

    def __init__(self, parameters: ParameterSet, input: Stimulus) -> None:
        self.parameters = parameters
        self.input = input

    def compute(self, stimulus: np.ndarray) -> np.ndarray:
        p = self.parameters
        rng = np.random.default_rng(p.seed)
        weights = rng.normal(p.weight.mean, p.weight.std, (p.n_neurons, stimulus.shape[0]))
        drive = weights @ stimulus.astype(np.float64)  # (neurons, steps)
        v = np.full(p.n_neurons, p.v_rest)
        spikes = np.zeros(drive.shape, dtype=bool)
        decay = np.exp(-p.dt / p.tau_m)
        for t in range(drive.shape[1]):
            v = p.v_rest + (v - p.v_rest) * decay + drive[:, t]
            fired = v >= p.v_thresh
            spikes[:, t] = fired
            v[fired] = p.v_reset
        return spikes


class Analysis:
    """Firing rates of the network's neurons, and their mean and spread."""

    version = "1.0"

    def __init__(self, parameters: ParameterSet, input: Network) -> None:
        self.parameters = parameters
        self.input = input

    def compute(self, spikes: np.ndarray, dt: float) -> dict[str, Any]:
        duration_s = spikes.shape[1] * dt / 1000.0
        rates = spikes.sum(axis=1) / duration_s
        return {
            "rates": rates,
            "mean_rate": float(rates.mean()),
            "rate_std": float(rates.std()),
            "silent_fraction": float((rates == 0).mean()),
        }


def build() -> Analysis:
    """The three chained components, with their parameters."""
    stimulus = Stimulus(
        ParameterSet({"n_inputs": 400, "rate": 20.0, "duration": 2000.0, "dt": 0.1, "seed": 1})
    )
    network = Network(
        ParameterSet(
            {
                "n_neurons": 300,
                "tau_m": 20.0,
                "v_rest": -70.0,
                "v_reset": -65.0,
                "v_thresh": -50.0,
                "dt": 0.1,
                "seed": 2,
                "weight": {"mean": 0.35, "std": 0.1},
            }
        ),
        input=stimulus,
    )
    return Analysis(ParameterSet({"statistic": "rates"}), input=network)


async def run_pipeline(store: AsyncDataStore) -> dict[str, Any]:
    """Run the three stages; each is computed only when the store does not hold it."""
    store.stats.reset()
    analysis = build()
    network = analysis.input
    stimulus = network.input
    stim = await store.get_or_compute(stimulus, "spikes", stimulus.compute)
    spikes = await store.get_or_compute(network, "spikes", lambda: network.compute(stim))
    dt = network.parameters.dt
    return dict(
        await store.get_or_compute(analysis, "summary", lambda: analysis.compute(spikes, dt))
    )


async def main(root: str) -> list[float]:
    timings = []
    async with AsyncShelveDataStore(root) as store:
        for run in (1, 2):
            start = time.perf_counter()
            result = await run_pipeline(store)
            elapsed = time.perf_counter() - start
            timings.append(elapsed)
            stats = store.stats
            print(
                f"run {run}: {elapsed:8.3f} s  hits={stats.hits} misses={stats.misses}  "
                f"mean rate {result['mean_rate']:.2f} Hz"
            )
    print(f"second run {timings[0] / timings[1]:.0f}x faster; store in {root}")
    return timings


if __name__ == "__main__":
    if len(sys.argv) > 1:
        anyio.run(main, sys.argv[1])
    else:
        with tempfile.TemporaryDirectory(prefix="adatastore-demo-") as directory:
            anyio.run(main, directory)
