"""Compute once: get_or_compute, cross-process single-flight, warm, @cached, stats."""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from components import PlainComponent, SimpleComponent, square_of_n
from faults import SHARED_BACKENDS, store_url
from helpers import StoreFactory, subprocess_env

from adatastore import (
    AsyncDataStore,
    AsyncMemoryDataStore,
    MemoryDataStore,
    WarmProgress,
    cached,
    open_store_sync,
)
from adatastore.errors import ConfigurationError, SerializationError

# -- single-flight inside a process -------------------------------------------------------------


class Gate:
    """A compute function that counts its calls and waits until the test opens the gate."""

    def __init__(self, result: Any = "computed", error: Exception | None = None) -> None:
        self.calls = 0
        self.result = result
        self.error = error
        self.open = anyio.Event()

    async def __call__(self) -> Any:
        self.calls += 1
        await self.open.wait()
        if self.error is not None:
            raise self.error
        return self.result


async def _many_callers(
    store: AsyncDataStore, gate: Gate, callers: int = 50
) -> list[tuple[str, Any]]:
    outcomes: list[tuple[str, Any]] = []
    c = SimpleComponent({"expensive": True})

    async def caller() -> None:
        try:
            outcomes.append(("value", await store.get_or_compute(c, "result", gate)))
        except Exception as error:
            outcomes.append(("error", error))

    async with anyio.create_task_group() as group:
        for _ in range(callers):
            group.start_soon(caller)
        await anyio.wait_all_tasks_blocked()  # every caller is inside get_or_compute
        gate.open.set()
    return outcomes


@pytest.mark.anyio
async def test_fifty_concurrent_callers_one_computation(make_store: StoreFactory) -> None:
    async with make_store() as store:
        gate = Gate({"spikes": [1, 2, 3]})
        outcomes = await _many_callers(store, gate)
        assert gate.calls == 1
        assert outcomes == [("value", {"spikes": [1, 2, 3]})] * 50
        stats = store.stats
        assert (stats.misses, stats.computes, stats.stores, stats.shared, stats.hits) == (
            1,
            1,
            1,
            49,
            0,
        )
        # later calls are hits
        again = await store.get_or_compute(SimpleComponent({"expensive": True}), "result", gate)
        assert again == {"spikes": [1, 2, 3]}
        assert (gate.calls, store.stats.hits) == (1, 1)


@pytest.mark.anyio
async def test_a_failing_computation_reaches_every_caller_and_stores_nothing(
    make_store: StoreFactory,
) -> None:
    async with make_store() as store:
        gate = Gate(error=ValueError("simulation diverged"))
        outcomes = await _many_callers(store, gate)
        assert gate.calls == 1
        assert len(outcomes) == 50
        assert all(kind == "error" and isinstance(e, ValueError) for kind, e in outcomes)
        assert not await store.contains(SimpleComponent({"expensive": True}), "result")
        assert (store.stats.computes, store.stats.failures, store.stats.stores) == (1, 1, 0)
        retry = Gate("second time lucky")
        retry.open.set()
        value = await store.get_or_compute(SimpleComponent({"expensive": True}), "result", retry)
        assert value == "second time lucky"
        assert retry.calls == 1


@pytest.mark.anyio
async def test_compute_kinds(make_store: StoreFactory) -> None:
    async def asynchronous() -> str:
        return "async"

    async with make_store() as store:
        assert await store.get_or_compute(PlainComponent({"k": 1}), "v", lambda: "plain") == (
            "plain"
        )
        assert await store.get_or_compute(PlainComponent({"k": 2}), "v", asynchronous) == "async"
        assert (
            await store.get_or_compute(PlainComponent({"k": 3}), "v", lambda: asynchronous())
            == "async"
        )
        # a stored None is a hit, not a reason to compute again
        await store.store(PlainComponent({"k": 4}), "v", None)
        assert await store.get_or_compute(PlainComponent({"k": 4}), "v", lambda: 1) is None


@pytest.mark.anyio
async def test_an_unstorable_result_is_an_error_for_every_caller(
    make_store: StoreFactory,
) -> None:
    async with make_store() as store:
        with pytest.raises(SerializationError):
            await store.get_or_compute(PlainComponent({"k": 1}), "v", lambda: lambda: 0)
        assert not await store.contains(PlainComponent({"k": 1}), "v")


@pytest.mark.anyio
async def test_cancelling_a_waiter_or_the_leader_does_not_stop_the_computation(
    anyio_backend: str,
) -> None:
    store = AsyncMemoryDataStore()
    c = SimpleComponent({"a": 1})
    gate = Gate("done")
    results: dict[str, Any] = {}

    async def call(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            results[name] = await store.get_or_compute(c, "v", gate)

    leader, waiter, patient = anyio.CancelScope(), anyio.CancelScope(), anyio.CancelScope()
    async with anyio.create_task_group() as group:
        group.start_soon(call, "leader", leader)
        await anyio.wait_all_tasks_blocked()  # the leader is computing
        group.start_soon(call, "waiter", waiter)
        group.start_soon(call, "patient", patient)
        await anyio.wait_all_tasks_blocked()
        leader.cancel()
        waiter.cancel()
        await anyio.wait_all_tasks_blocked()
        assert gate.calls == 1
        gate.open.set()
    assert results == {"patient": "done"}  # the cancelled ones returned nothing
    assert leader.cancelled_caught
    assert waiter.cancelled_caught
    assert await store.retrieve(c, "v") == "done"  # the computation was stored


@pytest.mark.anyio
async def test_cancelling_every_caller_early_leaves_nothing(anyio_backend: str) -> None:
    store = AsyncMemoryDataStore()
    c = SimpleComponent({"a": 1})
    with anyio.CancelScope() as scope:
        scope.cancel()
        await store.get_or_compute(c, "v", lambda: "never")
    assert not await store.contains(c, "v")
    assert not store._parts.host.flights
    assert await store.get_or_compute(c, "v", lambda: "later") == "later"


# -- across processes ---------------------------------------------------------------------------

RACER = """
import os, sys, time
from adatastore import open_store_sync
from components import SimpleComponent
url, log, order = sys.argv[1], sys.argv[2], [int(k) for k in sys.argv[3].split(",")]

def compute(key):
    def run():
        with open(log, "a") as stream:
            stream.write(f"{key} {os.getpid()}\\n")
        time.sleep(0.3)  # a long computation
        return key * 10
    return run

store = open_store_sync(url)
values = [store.get_or_compute(SimpleComponent({"key": k}), "v", compute(k)) for k in order]
print(",".join(map(str, values)), store.stats.computes, store.stats.hits + store.stats.misses)
store.close()
"""


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
@pytest.mark.slow
def test_four_processes_compute_each_key_once(backend: str, tmp_path: Path) -> None:
    log = tmp_path / "computes.log"
    orders = ["0,1,2,3", "3,2,1,0", "1,3,0,2", "2,0,3,1"]
    with store_url(backend, tmp_path) as url:
        open_store_sync(url).close()  # create the storage once
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(RACER), url, str(log), order],
                env=subprocess_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for order in orders
        ]
        outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], [err for _, err in outputs]
    computed = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert computed == {"0": 1, "1": 1, "2": 1, "3": 1}
    total = 0
    for (out, _), order in zip(outputs, orders, strict=True):
        values, computes, lookups = out.split()
        assert values == ",".join(str(int(k) * 10) for k in order.split(","))
        assert lookups == "4"
        total += int(computes)
    assert total == 4


HOLDER = """
import sys, time
from adatastore import open_store_sync
from components import SimpleComponent

def compute():
    print("computing", flush=True)
    time.sleep(120)
    return "from the holder"

store = open_store_sync(sys.argv[1])
store.get_or_compute(SimpleComponent({"locked": True}), "v", compute)
"""

TAKER = """
import sys
from adatastore import open_store_sync
from components import SimpleComponent
store = open_store_sync(sys.argv[1])
value = store.get_or_compute(
    SimpleComponent({"locked": True}), "v", lambda: "from the taker", lock_timeout=600)
print(value, store.stats.computes)
"""


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_a_killed_lock_holder_is_taken_over(backend: str, tmp_path: Path) -> None:
    with store_url(backend, tmp_path) as url:
        open_store_sync(url).close()
        holder = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(HOLDER), url],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None
        readable, _, _ = select.select([holder.stdout], [], [], 60)
        assert readable
        assert holder.stdout.readline().strip() == "computing"  # it holds the lock
        taker = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(TAKER), url],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # the taker waits for the lock; the holder dies without releasing it
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        holder.stdout.close()
        # lock_timeout is 600 s: finishing well before means the lock was taken over
        out, err = taker.communicate(timeout=120)
    assert taker.returncode == 0, err
    assert out.split() == ["from", "the", "taker", "1"]


def test_warm_waits_for_another_process_only_lock_timeout_seconds(tmp_path: Path) -> None:
    """`warm(lock_timeout=...)`: 0.2.0 waited up to a fixed 3,600 s for an entry another
    process was computing; now the caller says how long before computing it anyway."""
    with store_url("sqlite", tmp_path) as url:
        open_store_sync(url).close()
        holder = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(HOLDER), url],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            readable, _, _ = select.select([holder.stdout], [], [], 60)
            assert readable
            assert holder.stdout.readline().strip() == "computing"  # it holds the lock
            with open_store_sync(url) as store:
                report = store.warm(
                    [SimpleComponent({"locked": True})], "v", lambda c: "warm", lock_timeout=0.5
                )
                assert (report.computed, report.failed) == (1, ())
                assert store.retrieve(SimpleComponent({"locked": True}), "v") == "warm"
            assert holder.poll() is None, "the holder still holds the lock: not taken over"
        finally:
            holder.kill()
            holder.wait(timeout=30)
            if holder.stdout is not None:
                holder.stdout.close()


# -- warm ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_warm_computes_each_distinct_component_once(make_store: StoreFactory) -> None:
    calls: Counter[int] = Counter()

    async def compute(component: PlainComponent) -> int:
        n = int(component.parameters["n"])
        calls[n] += 1
        await anyio.lowlevel.checkpoint()
        if n % 50 == 7:
            raise ValueError(f"component {n} fails")
        return n * n

    components = [PlainComponent({"n": n}) for n in range(200)]
    components += [PlainComponent({"n": n}) for n in range(0, 200, 10)]  # 10% duplicates
    seen: list[WarmProgress] = []
    async with make_store() as store:
        for n in range(100, 130):  # already stored
            await store.store(PlainComponent({"n": n}), "square", n * n)
        report = await store.warm(
            components, "square", compute, concurrency=20, progress=seen.append
        )
        assert report.duplicates == 20
        assert report.already_stored == 30
        assert len(report.failed) == 3  # n = 7, 57, 157 (107 is already stored)
        assert report.computed == 200 - 30 - 3
        assert all(isinstance(error, ValueError) for _, error in report.failed)
        assert set(calls) == set(range(200)) - set(range(100, 130))
        assert all(count == 1 for count in calls.values())
        assert seen[-1].done == seen[-1].total == 200
        assert (store.stats.misses, store.stats.hits, store.stats.computes) == (167, 30, 170)
        assert store.stats.failures == 3
        for n in (0, 199, 120):
            assert await store.retrieve(PlainComponent({"n": n}), "square") == n * n
        assert not await store.contains(PlainComponent({"n": 7}), "square")


@pytest.mark.anyio
async def test_warm_stop_on_error_and_bad_options(anyio_backend: str) -> None:
    store = AsyncMemoryDataStore()

    def compute(component: PlainComponent) -> int:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        await store.warm(
            [PlainComponent({"n": n}) for n in range(10)], "v", compute, stop_on_error=True
        )
    with pytest.raises(ConfigurationError, match="concurrency"):
        await store.warm([], "v", compute, threads=True, concurrency=0)


WARMER = """
import os, sys, time
from adatastore import open_store_sync
from components import SimpleComponent
url, log, order = sys.argv[1], sys.argv[2], [int(k) for k in sys.argv[3].split(",")]

def compute(component):
    with open(log, "a") as stream:
        stream.write(f"{component.parameters['n']} {os.getpid()}\\n")
    time.sleep(0.02)
    return component.parameters["n"] * 10

store = open_store_sync(url)
report = store.warm([SimpleComponent({"n": n}) for n in order], "v", compute, threads=8)
print(report.computed, report.already_stored, len(report.failed))
store.close()
"""


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_three_processes_warming_overlapping_sets_compute_each_once(
    backend: str, tmp_path: Path
) -> None:
    log = tmp_path / "computes.log"
    orders = [range(0, 60), range(59, -1, -1), [*range(30, 60), *range(0, 30)]]
    with store_url(backend, tmp_path) as url:
        open_store_sync(url).close()
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", WARMER, url, str(log), ",".join(map(str, order))],
                env=subprocess_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for order in orders
        ]
        outputs = [p.communicate(timeout=300) for p in processes]
        assert [p.returncode for p in processes] == [0, 0, 0], [err for _, err in outputs]
        computed = Counter(int(line.split()[0]) for line in log.read_text().splitlines())
        assert computed == dict.fromkeys(range(60), 1)
        reports = [tuple(map(int, out.split())) for out, _ in outputs]
        assert sum(computed for computed, _, _ in reports) == 60
        assert all(done + stored == 60 and failed == 0 for done, stored, failed in reports)
        store = open_store_sync(url)
        values = store.retrieve_many([(SimpleComponent({"n": n}), "v") for n in range(60)])
        store.close()
    assert values == [n * 10 for n in range(60)]


@pytest.mark.anyio
async def test_warm_waits_for_an_entry_another_task_is_computing(
    make_store: StoreFactory,
) -> None:
    gate = anyio.Event()
    calls: Counter[int] = Counter()

    async def slow() -> int:
        calls[-1] += 1
        await gate.wait()
        return -1

    async def compute(component: PlainComponent) -> int:
        calls[int(component.parameters["n"])] += 1
        return int(component.parameters["n"])

    components = [PlainComponent({"n": n}) for n in range(20)]
    nineteen_done = anyio.Event()

    def on_progress(state: WarmProgress) -> None:
        if state.done >= 19:
            nineteen_done.set()

    async with make_store() as store, anyio.create_task_group() as group:
        group.start_soon(store.get_or_compute, components[5], "v", slow)
        await anyio.wait_all_tasks_blocked()
        warming = anyio.Event()

        async def warm() -> None:
            report = await store.warm(components, "v", compute, concurrency=4, progress=on_progress)
            assert (report.computed, report.already_stored) == (20, 0)
            warming.set()

        try:
            group.start_soon(warm)
            with anyio.fail_after(30):
                await nineteen_done.wait()
            assert not warming.is_set()  # it waits for the entry in flight
            assert await store.retrieve(components[19], "v") == 19
        finally:
            gate.set()
    assert calls[5] == 0  # computed once, by get_or_compute
    assert calls[-1] == 1
    assert warming.is_set()


@pytest.mark.anyio
async def test_a_cancelled_warm_stores_what_it_computed_and_lets_go(
    make_store: StoreFactory,
) -> None:
    started: list[int] = []
    release = anyio.Event()

    async def compute(component: PlainComponent) -> int:
        n = int(component.parameters["n"])
        started.append(n)
        if len(started) == 8:
            eight_started.set()
        await release.wait()
        return n

    components = [PlainComponent({"n": n}) for n in range(40)]
    eight_started = anyio.Event()
    async with make_store() as store:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(store.warm, components, "v", compute)
                try:
                    with anyio.fail_after(30):
                        await eight_started.wait()
                    await anyio.wait_all_tasks_blocked()
                    assert sorted(started) == list(range(8))  # concurrency 8
                    scope.cancel()
                    await anyio.wait_all_tasks_blocked()
                finally:
                    release.set()  # the computations in flight were shielded: they finish
        assert not store._parts.host.flights
        stored = [await store.contains(c, "v") for c in components]
        assert stored == [True] * 8 + [False] * 32
        report = await store.warm(components, "v", compute)  # nothing left locked
        assert (report.computed, report.already_stored) == (32, 8)


def test_warm_in_worker_processes_and_with_a_progress_bar(
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = MemoryDataStore()
    components = [PlainComponent({"n": n}) for n in range(12)]
    report = store.warm(components, "square", square_of_n, processes=True, progress=True)
    assert report.computed == 12
    assert report.ok
    assert [store.retrieve(c, "square") for c in components] == [n * n for n in range(12)]
    assert "12/12" in capsys.readouterr().err


# -- the decorator ------------------------------------------------------------------------------


class Network:
    version = "1.0"
    datastore: Any = None

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.parameters = parameters
        self.input = None
        self.simulations = 0

    @cached("spikes", store=lambda network: network.datastore)
    async def spikes(self) -> list[int]:
        self.simulations += 1
        await anyio.lowlevel.checkpoint()
        return [1, 2, int(self.parameters["n"])]

    @cached(store=lambda network: network.datastore)
    def rates(self) -> float:
        self.simulations += 1
        return float(self.parameters["n"]) / 2


@pytest.mark.anyio
async def test_cached_async_method(make_store: StoreFactory) -> None:
    async with make_store() as store:
        network = Network({"n": 5})
        network.datastore = store
        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(network.spikes)
        assert network.simulations == 1
        assert await network.spikes() == [1, 2, 5]
        assert await store.retrieve(network, "spikes") == [1, 2, 5]
        other = Network({"n": 6})
        other.datastore = store
        assert await other.spikes() == [1, 2, 6]


def test_cached_sync_method_and_wrong_store_kinds() -> None:
    network = Network({"n": 4})
    network.datastore = MemoryDataStore()
    assert network.rates() == network.rates() == 2.0
    assert network.simulations == 1
    assert network.datastore.retrieve(network, "rates") == 2.0  # named after the method
    network.datastore = AsyncMemoryDataStore()
    with pytest.raises(ConfigurationError, match="needs a blocking store"):
        network.rates()


@pytest.mark.anyio
async def test_cached_async_method_needs_an_async_store(anyio_backend: str) -> None:
    network = Network({"n": 4})
    network.datastore = object()
    with pytest.raises(ConfigurationError, match="needs an async store"):
        await network.spikes()


# -- stats --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stats_count_and_log(
    make_store: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="adatastore")
    async with make_store() as store:
        c = SimpleComponent({"s": 1})
        await store.retrieve(c, "x")
        await store.store(c, "x", b"y" * 1000)
        await store.retrieve(c, "x")
        stats = store.stats
        assert (stats.hits, stats.misses, stats.stores) == (1, 1, 1)
        assert stats.bytes_written > 1000
        assert stats.bytes_read == stats.bytes_written
        assert stats.read_seconds > 0
        assert stats.write_seconds > 0
        assert stats.as_dict()["hits"] == 1
        stats.reset()
        assert stats.as_dict() == {k: 0 for k in stats.as_dict()}
    messages = [r.getMessage() for r in caplog.records if r.name == "adatastore"]
    assert any(m.startswith("miss: x of ") for m in messages)
    assert any(m.startswith("hit: x of ") for m in messages)
    assert any(m.startswith("stored x of ") for m in messages)


@pytest.mark.anyio
async def test_retrieve_many_logs_each_hit_and_miss_as_retrieve_does(
    make_store: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Two read paths had drifted: ``retrieve_many`` counted hits and misses but logged
    neither."""
    caplog.set_level(logging.DEBUG, logger="adatastore")
    async with make_store() as store:
        stored, missing = SimpleComponent({"s": 1}), SimpleComponent({"s": 2})
        await store.store(stored, "x", b"y")
        caplog.clear()
        await store.retrieve(stored, "x")
        await store.retrieve(missing, "x")
        one_by_one = [r.getMessage() for r in caplog.records if r.name == "adatastore"]
        caplog.clear()
        assert await store.retrieve_many([(stored, "x"), (missing, "x")]) == [b"y", None]
        at_once = [r.getMessage() for r in caplog.records if r.name == "adatastore"]
    assert one_by_one == [
        f"hit: x of {store.key_of(stored)}",
        f"miss: x of {store.key_of(missing)}",
    ]
    assert at_once == one_by_one
