"""``warm(executor=...)`` with the standard library's executors: process pools (fork,
spawn and forkserver) and thread pools, on stores the workers open themselves (SQLite,
files) and on a memory store, whose values come back and are stored by the caller.

A real `ProcessPoolExecutor` in every test; `Logged` (tests/cluster_tasks.py) records
each computation's start and end with its worker's pid.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import anyio
import pytest
from cluster_tasks import ComputeFailed, Logged, done_counts, points, read_log, tripled
from components import PlainComponent
from helpers import eventually

from adatastore import (
    AsyncSQLiteDataStore,
    ConfigurationError,
    ExecutorError,
    MemoryDataStore,
    ShelveDataStore,
    SQLiteDataStore,
    StoreSpec,
    open_store,
    open_store_sync,
)
from adatastore.errors import IntegrityError

KEY = "k" * 32

EXECUTORS = ["fork", "spawn", "forkserver", "threads"]


@pytest.fixture(params=EXECUTORS)
def executor(request: pytest.FixtureRequest) -> Iterator[concurrent.futures.Executor]:
    if request.param == "threads":
        pool: concurrent.futures.Executor = concurrent.futures.ThreadPoolExecutor(4)
    else:
        context = multiprocessing.get_context(request.param)
        pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=context)
    with pool:
        yield pool


@contextlib.contextmanager
def sqlite_and_fork_pool(tmp_path: Path, workers: int) -> Iterator[tuple[Any, Any]]:
    """A new SQLite store and a process pool of `workers` forked processes."""
    context = multiprocessing.get_context("fork")
    with (
        SQLiteDataStore(tmp_path / "c.db") as store,
        concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool,
    ):
        yield store, pool


@pytest.fixture(params=["sqlite", "files"])
def disk_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        store: Any = SQLiteDataStore(tmp_path / "cache.db")
    else:
        store = ShelveDataStore(tmp_path / "cache")
    with store:
        yield store


def test_a_sweep_is_computed_once_by_the_workers_and_a_rerun_computes_nothing(
    executor: concurrent.futures.Executor, disk_store: Any, tmp_path: Path
) -> None:
    log = str(tmp_path / "log")
    sweep = points(200)
    report = disk_store.warm(sweep, "square", Logged(log), executor=executor)
    assert report.ok, report.failed
    assert (report.computed, report.already_stored) == (200, 0)
    assert done_counts(log) == {n: 1 for n in range(200)}
    workers = {worker for _, _, worker in read_log(log)}
    caller = f"{os.uname().nodename}:{os.getpid()}"
    if isinstance(executor, concurrent.futures.ProcessPoolExecutor):
        assert caller not in workers  # the workers computed, and stored (nothing came back)
    assert set(report.workers) == workers
    assert sum(tally.computed for tally in report.workers.values()) == 200
    assert all(tally.bytes > 0 for tally in report.workers.values())
    assert disk_store.retrieve_many([(c, "square") for c in sweep]) == [n * n for n in range(200)]

    again = disk_store.warm(points(250), "square", Logged(log), executor=executor)
    assert (again.computed, again.already_stored) == (50, 200)  # only the 50 new ones
    assert done_counts(log) == {n: 1 for n in range(250)}


def test_a_generated_sweep_is_read_a_chunk_at_a_time_and_repeats_are_computed_once(
    tmp_path: Path,
) -> None:
    log = str(tmp_path / "log")
    taken: list[int] = []

    def generated() -> Iterator[PlainComponent]:
        for n in [*range(600), 5, 5, 599]:
            taken.append(n)
            yield PlainComponent({"n": n})

    with (
        SQLiteDataStore(tmp_path / "c.db") as store,
        concurrent.futures.ThreadPoolExecutor(2) as pool,
    ):
        progress: list[tuple[int, int]] = []
        report = store.warm(
            generated(),
            "square",
            Logged(log),
            executor=pool,
            concurrency=4,
            progress=lambda state: progress.append((state.total, len(taken))),
        )
        # 5 again: done long since, found stored; then 5 and 599 while still pending
        assert (report.computed, report.already_stored, report.duplicates) == (600, 1, 2)
        assert done_counts(log) == {n: 1 for n in range(600)}
        # the generator was read as the warm went: early reports had seen a chunk only
        assert progress[0][1] <= 2 * 256
        assert progress[-1] == (601, 603)  # the distinct ones, as found


def test_a_memory_store_gets_the_values_back_and_stores_them(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    context = multiprocessing.get_context("fork")
    with (
        MemoryDataStore() as store,
        concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool,
    ):
        assert store.spec is None  # no other process can open it
        report = store.warm(points(40), "square", Logged(log), executor=pool)
        assert (report.computed, report.ok) == (40, True)
        assert store.retrieve(PlainComponent({"n": 7}), "square") == 49
        assert os.getpid() not in {int(w.split(":")[1]) for w in report.workers}
        with pytest.raises(ConfigurationError, match="workers cannot open it"):
            store.warm(points(1), "square", Logged(log), executor=pool, store_in_workers=True)


@pytest.mark.parametrize("url", ["sqlite", "memory://"])
def test_an_async_compute_runs_on_the_workers(url: str, tmp_path: Path) -> None:
    """Awaited by the worker's store, or (values coming back) in the worker's thread."""
    context = multiprocessing.get_context("fork")
    with (
        open_store_sync(tmp_path / "c.db" if url == "sqlite" else url) as store,
        concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool,
    ):
        report = store.warm(points(10), "triple", tripled, executor=pool)
        assert (report.computed, report.failed) == (10, ())
        assert store.retrieve(PlainComponent({"n": 4}), "triple") == 12


def test_store_in_workers_false_brings_the_values_back_to_the_caller(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    with (
        SQLiteDataStore(tmp_path / "c.db") as store,
        concurrent.futures.ThreadPoolExecutor(2) as pool,
    ):
        report = store.warm(
            points(30), "square", Logged(log), executor=pool, store_in_workers=False
        )
        assert report.computed == 30
        assert store.retrieve(PlainComponent({"n": 5}), "square") == 25
        assert done_counts(log) == {n: 1 for n in range(30)}


def test_a_store_that_cannot_be_described_warms_with_the_values_coming_back(
    tmp_path: Path,
) -> None:
    """A key generator that cannot be pickled: the workers cannot open the store (said
    clearly), but with store_in_workers=False the caller stores what they compute."""
    log = str(tmp_path / "log")
    with (
        SQLiteDataStore(
            tmp_path / "c.db", key_generator=lambda c: f"n{c.parameters['n']}"
        ) as store,
        concurrent.futures.ThreadPoolExecutor(2) as pool,
    ):
        with pytest.raises(ConfigurationError, match="cannot be described for other processes"):
            store.warm(points(3), "square", Logged(log), executor=pool)
        report = store.warm(points(3), "square", Logged(log), executor=pool, store_in_workers=False)
        assert report.computed == 3
        assert [entry.key for entry in store.list_contents()] == ["n0", "n1", "n2"]


def not_at_module_level() -> Any:
    def local(component: Any) -> int:
        return 1

    return local


class Unpicklable(PlainComponent):
    def __init__(self, n: int) -> None:
        super().__init__({"n": n})
        self.lock = threading.Lock()  # cannot be pickled


def test_what_cannot_be_pickled_is_refused_by_name_before_anything_runs(
    tmp_path: Path,
) -> None:
    log = str(tmp_path / "log")
    with sqlite_and_fork_pool(tmp_path, 2) as (store, pool):
        with pytest.raises(ConfigurationError, match=r"compute function .*local.* cannot be"):
            store.warm(points(5), "square", not_at_module_level(), executor=pool)
        sweep = [*points(5), Unpicklable(5), *points(5, start=6)]
        with pytest.raises(ConfigurationError, match=r"component 5 \(Unpicklable\) cannot be"):
            store.warm(sweep, "square", Logged(log), executor=pool)
        assert read_log(log) == []  # nothing was submitted
        assert store.list_contents() == []
        assert not pool._processes  # the pool never started a worker


def test_a_failing_compute_is_reported_with_its_worker_and_stores_nothing(
    tmp_path: Path,
) -> None:
    log = str(tmp_path / "log")
    with sqlite_and_fork_pool(tmp_path, 2) as (store, pool):
        compute = Logged(log, fail=frozenset({3, 11}))
        report = store.warm(points(20), "square", compute, executor=pool)
        assert report.computed == 18
        failures = {cast(Any, c).parameters["n"]: error for c, error in report.failed}
        assert set(failures) == {3, 11}
        assert all(isinstance(error, ComputeFailed) for error in failures.values())
        worker = next(iter(failures.values())).__notes__[0]
        assert worker.startswith("(on worker ")
        assert str(os.getpid()) not in worker
        assert sum(tally.failed for tally in report.workers.values()) == 2
        assert store.retrieve(PlainComponent({"n": 3}), "square") is None
        assert not store.contains(PlainComponent({"n": 11}), "square")


def test_stop_on_error_raises_and_submits_nothing_more(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    with sqlite_and_fork_pool(tmp_path, 1) as (store, pool):
        compute = Logged(log, fail=frozenset({2}))
        with pytest.raises(ComputeFailed, match="component 2 fails"):
            store.warm(
                points(50), "square", compute, executor=pool, concurrency=1, stop_on_error=True
            )
        started = {n for event, n, _ in read_log(log) if event == "start"}
        assert started == {0, 1, 2}  # one task in flight at a time: none after the failure


def test_bounded_submission_keeps_at_most_concurrency_tasks_in_flight(tmp_path: Path) -> None:
    seen: list[int] = []
    with (
        SQLiteDataStore(tmp_path / "c.db") as store,
        concurrent.futures.ThreadPoolExecutor(8) as pool,
    ):
        report = store.warm(
            points(300),
            "square",
            Logged(str(tmp_path / "log")),
            executor=pool,
            concurrency=3,
            progress=lambda state: seen.append(state.in_flight),
        )
        assert report.computed == 300
        assert max(seen) <= 3
        assert seen[-1] == 0


def test_a_signed_store_needs_the_same_key_in_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = str(tmp_path / "log")
    monkeypatch.delenv("ADATASTORE_SIGNING_KEY", raising=False)
    context = multiprocessing.get_context("fork")
    with SQLiteDataStore(tmp_path / "c.db", signing_key=KEY) as store:
        assert "k" * 8 not in repr(store.spec) + str(pickle.dumps(store.spec))
        with (
            concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool,
            pytest.raises(ConfigurationError, match="ADATASTORE_SIGNING_KEY is not set"),
        ):
            store.warm(points(3), "square", Logged(log), executor=pool)
        assert store.list_contents() == []
        monkeypatch.setenv("ADATASTORE_SIGNING_KEY", "another key " * 3)
        with (
            concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool,
            pytest.raises(ConfigurationError, match="holds another key"),
        ):
            store.warm(points(3), "square", Logged(log), executor=pool)
        monkeypatch.setenv("ADATASTORE_SIGNING_KEY", KEY)
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            report = store.warm(points(3), "square", Logged(log), executor=pool)
        assert report.computed == 3
        assert store.retrieve(PlainComponent({"n": 2}), "square") == 4  # signature checked
    with (
        SQLiteDataStore(tmp_path / "c.db", signing_key="x" * 32) as other,
        pytest.raises(IntegrityError, match="signature"),
    ):
        other.retrieve(PlainComponent({"n": 2}), "square")


def test_a_spec_reopens_the_same_store_in_another_process(tmp_path: Path) -> None:
    with SQLiteDataStore(tmp_path / "c.db") as store:
        store.store(PlainComponent({"n": 1}), "square", 1)
        spec = store.spec
        assert isinstance(spec, StoreSpec)
        assert spec.url == f"sqlite:///{tmp_path / 'c.db'}"
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            assert pool.submit(_read_through_spec, spec).result() == 1
        with open_store_sync(pickle.loads(pickle.dumps(spec))) as again:
            assert again.retrieve(PlainComponent({"n": 1}), "square") == 1
        with pytest.raises(ConfigurationError, match="cannot be added"):
            open_store_sync(spec, durable=True)


def _read_through_spec(spec: StoreSpec) -> Any:
    with open_store_sync(spec) as store:
        return store.retrieve(PlainComponent({"n": 1}), "square")


def test_a_store_is_described_only_once_open(tmp_path: Path) -> None:
    store = AsyncSQLiteDataStore(tmp_path / "c.db")
    with pytest.raises(ConfigurationError, match="not open yet"):
        store.spec  # noqa: B018


def test_an_executor_that_is_not_one_is_refused(tmp_path: Path) -> None:
    with SQLiteDataStore(tmp_path / "c.db") as store:
        with pytest.raises(ConfigurationError, match=r"concurrent\.futures\.Executor or a dask"):
            store.warm(points(2), "square", Logged(str(tmp_path / "log")), executor=object())
        with (
            pytest.raises(ConfigurationError, match="one or the other"),
            concurrent.futures.ThreadPoolExecutor(1) as pool,
        ):
            store.warm(points(2), "square", abs, executor=pool, processes=True)


def test_a_broken_pool_stops_the_warm_and_a_rerun_resumes(tmp_path: Path) -> None:
    """A worker's death breaks a ProcessPoolExecutor for good: its task is retried once,
    the pool refuses, and warm says so; a rerun with a new pool computes the rest."""
    log = str(tmp_path / "log")
    context = multiprocessing.get_context("fork")
    with SQLiteDataStore(tmp_path / "c.db") as store:
        with (
            concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool,
            pytest.raises(ExecutorError, match="takes no more work"),
        ):
            store.warm(points(20), "square", Logged(log, die_once=10), executor=pool, concurrency=1)
        stored = {entry.key for entry in store.list_contents()}
        assert 0 < len(stored) <= 10
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
            report = store.warm(points(20), "square", Logged(log), executor=pool)
        assert report.computed == 20 - len(stored)
        assert report.already_stored == len(stored)
        assert done_counts(log) == {n: 1 for n in range(20)}


@pytest.mark.anyio
@pytest.mark.parametrize("url", ["sqlite", "memory://"])
async def test_the_async_api_takes_an_executor_on_both_loops(url: str, tmp_path: Path) -> None:
    """The workers store (SQLite), or the values come back (memory): on asyncio and trio."""
    log = str(tmp_path / "log")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        async with await open_store(tmp_path / "c.db" if url == "sqlite" else url) as store:
            report = await store.warm(points(60), "square", Logged(log), executor=pool)
            assert report.computed == 60
            assert await store.retrieve(PlainComponent({"n": 8}), "square") == 64
            assert done_counts(log) == {n: 1 for n in range(60)}


CANCELLERS = ["anyio scope", "asyncio.timeout", "Task.cancel"]


@pytest.mark.anyio
@pytest.mark.asyncio_only
@pytest.mark.parametrize("how", CANCELLERS)
async def test_cancelling_a_warm_cancels_what_was_not_started(how: str, tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        async with await open_store(tmp_path / "c.db") as store:
            warming = store.warm(
                points(500), "square", Logged(log, cpu_seconds=0.01), executor=pool, concurrency=4
            )
            if how == "anyio scope":
                with anyio.move_on_after(0.3):
                    await warming
            elif how == "asyncio.timeout":
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.3):
                        await warming
            else:
                task = asyncio.ensure_future(warming)
                await eventually(lambda: len(read_log(log)) >= 3)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            pool.shutdown(wait=True)  # the started ones end; the cancelled never start
            started = len([1 for event, _, _ in read_log(log) if event == "start"])
            assert 0 < started < 500
            stored = len(await store.list_contents())
            assert stored == started  # each started computation was stored by its worker


def test_a_database_password_travels_in_the_spec_but_is_never_shown() -> None:
    from adatastore import AsyncDjangoORMDataStore

    parameters = {
        "ENGINE": "postgresql",
        "NAME": "sweeps",
        "USER": "lab",
        "PASSWORD": "s3cret-pw",
        "HOST": "db.example",
    }
    backend = AsyncDjangoORMDataStore(parameters).backend
    spec = backend.spec()
    assert spec is not None
    assert spec.url == "django+postgresql://lab:***@db.example/sweeps"
    assert "s3cret" not in repr(spec) + spec.url
    assert b"s3cret-pw" in pickle.dumps(spec)  # the workers need it to connect
    in_memory = AsyncDjangoORMDataStore({"ENGINE": "sqlite3", "NAME": ":memory:"}).backend
    assert in_memory.spec() is None  # no other process can reach it
