"""The demo: a small simulation pipeline, run twice against the embedded SQLite default.

    stimulus (Poisson spike trains) -> network (leaky integrate-and-fire neurons)
                                    -> analysis (firing rates, irregularity)

Pure Python, so it runs right after ``pip install adatastore``: the first run computes
each stage (about a second here), the second finds all three in the store.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from .store import AsyncDataStore
from .urls import open_store


class Stimulus:
    """Independent Poisson spike trains: a list of spike times (ms) per input."""

    version = "1.0"

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.parameters = parameters
        self.input = None

    def compute(self) -> list[list[float]]:
        p = self.parameters
        rng = random.Random(p["seed"])
        trains = []
        for _ in range(p["n_inputs"]):
            t, train = 0.0, []
            while True:
                t += rng.expovariate(p["rate"] / 1000.0)
                if t >= p["duration"]:
                    break
                train.append(t)
            trains.append(train)
        return trains


class Network:
    """Leaky integrate-and-fire neurons, each driven by a random subset of the inputs."""

    version = "1.0"

    def __init__(self, parameters: dict[str, Any], input: Stimulus) -> None:
        self.parameters = parameters
        self.input = input

    def compute(self, trains: list[list[float]]) -> list[list[float]]:
        p = self.parameters
        rng = random.Random(p["seed"])
        steps = int(self.input.parameters["duration"] / p["dt"])
        events: list[list[tuple[int, float]]] = [[] for _ in range(steps)]
        for neuron in range(p["n_neurons"]):
            for source in rng.sample(range(len(trains)), p["fan_in"]):
                weight = rng.gauss(p["weight_mean"], p["weight_std"])
                for t in trains[source]:
                    events[int(t / p["dt"])].append((neuron, weight))
        decay = math.exp(-p["dt"] / p["tau_m"])
        rest, reset, threshold = p["v_rest"], p["v_reset"], p["v_thresh"]
        v = [rest] * p["n_neurons"]
        spikes: list[list[float]] = [[] for _ in range(p["n_neurons"])]
        for step in range(steps):
            v = [rest + (x - rest) * decay for x in v]
            for neuron, weight in events[step]:
                v[neuron] += weight
                if v[neuron] >= threshold:
                    spikes[neuron].append(step * p["dt"])
                    v[neuron] = reset
        return spikes


class Analysis:
    """Firing rate of each neuron, their mean, and the mean coefficient of variation."""

    version = "1.0"

    def __init__(self, parameters: dict[str, Any], input: Network) -> None:
        self.parameters = parameters
        self.input = input

    def compute(self, spikes: list[list[float]], duration_ms: float) -> dict[str, Any]:
        rates = [len(train) / (duration_ms / 1000.0) for train in spikes]
        cvs = []
        for train in spikes:
            intervals = [b - a for a, b in itertools.pairwise(train)]
            if len(intervals) > 1:
                mean = sum(intervals) / len(intervals)
                sd = math.sqrt(sum((i - mean) ** 2 for i in intervals) / len(intervals))
                cvs.append(sd / mean)
        return {
            "rates": rates,
            "mean_rate": sum(rates) / len(rates),
            "mean_cv": sum(cvs) / len(cvs) if cvs else float("nan"),
        }


def build() -> Analysis:
    """The pipeline's three components, with their parameters."""
    stimulus = Stimulus({"n_inputs": 200, "rate": 20.0, "duration": 10000.0, "seed": 1})
    network = Network(
        {
            "n_neurons": 200,
            "fan_in": 40,
            "dt": 0.1,
            "tau_m": 20.0,
            "v_rest": -70.0,
            "v_reset": -65.0,
            "v_thresh": -50.0,
            "weight_mean": 1.5,
            "weight_std": 0.5,
            "seed": 2,
        },
        input=stimulus,
    )
    return Analysis({"statistics": ["rate", "cv"]}, input=network)


@dataclass
class RunReport:
    seconds: float
    hits: int
    misses: int
    result: dict[str, Any]


async def run_pipeline(store: AsyncDataStore) -> RunReport:
    """Run the pipeline once, computing only what the store does not hold."""
    store.stats.reset()
    start = time.perf_counter()
    analysis = build()
    network = analysis.input
    stimulus = network.input
    # Each stage is computed (in a worker thread) only when the store does not hold it.
    trains = await store.get_or_compute(stimulus, "spikes", stimulus.compute)
    spikes = await store.get_or_compute(network, "spikes", lambda: network.compute(trains))
    duration = stimulus.parameters["duration"]
    result = await store.get_or_compute(
        analysis, "summary", lambda: analysis.compute(spikes, duration)
    )
    seconds = time.perf_counter() - start
    return RunReport(seconds, store.stats.hits, store.stats.misses, result)


async def demo(
    url: str, print_: Callable[[str], None] = print, *, temporary: bool = False
) -> list[RunReport]:
    """Run the pipeline twice against the store at `url`; print and return both reports.

    With `temporary`, say that the store goes with the temporary directory it is in.
    """
    reports = []
    async with await open_store(url) as store:
        print_(f"store: {url}")
        for run in (1, 2):
            report = await run_pipeline(store)
            reports.append(report)
            print_(
                f"run {run}: {report.seconds:8.3f} s   hits={report.hits} "
                f"misses={report.misses}   mean rate {report.result['mean_rate']:.2f} Hz"
            )
    first, second = reports
    if first.misses:
        print_(f"the second run was {first.seconds / second.seconds:.0f}x faster")
    else:
        print_(
            "both runs were served from the store: it held the results already "
            "(give a new --dir to compute them again)"
        )
    if temporary:
        print_(
            "the store was in a temporary directory, now removed; "
            "'adatastore demo --dir DIR' keeps one to look at with "
            "'adatastore ls --url DIR/demo.db'"
        )
    return reports


def run_demo(directory: str | None = None, url: str | None = None) -> list[RunReport]:
    """Blocking entry point: a SQLite store in `directory` (a temporary one by default)."""
    if url is not None:
        return anyio.run(demo, url, backend="asyncio")
    if directory is not None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        return anyio.run(demo, str(Path(directory) / "demo.db"), backend="asyncio")
    with tempfile.TemporaryDirectory(prefix="adatastore-demo-") as temporary:
        return anyio.run(
            functools.partial(demo, str(Path(temporary) / "demo.db"), temporary=True),
            backend="asyncio",
        )
