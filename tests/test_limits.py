"""Size, count and age limits (issue 19): `max_size`, `max_entries`, `max_age` and
``store(..., expire=...)`` on every back-end of the conformance suite; eviction least
recently used first, never of a locked entry. Time is moved on with the stores' clock
(`adatastore._runtime.clock.clock`), never slept.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from components import PlainComponent
from faults import SHARED_BACKENDS, store_url
from helpers import StoreFactory, subprocess_env

from adatastore import AsyncDataStore, SyncDataStore, open_store, open_store_sync
from adatastore._compute.spec import WorkerStore
from adatastore._core import ops as _ops
from adatastore._runtime.clock import clock
from adatastore.backends.objects import ENTRIES, ObjectBackend
from adatastore.errors import ConfigurationError

pytestmark = pytest.mark.anyio

MB = 1_000_000


@pytest.fixture
def moving_clock() -> Iterator[list[float]]:
    """The stores' clock, moved on by assigning ``moving_clock[0] = seconds``."""
    offset = [0.0]
    saved = clock.offset
    yield offset
    clock.offset = saved


def at(offset: float) -> None:
    clock.offset = offset


def item(n: int) -> PlainComponent:
    return PlainComponent({"n": n})


async def total_size(store: AsyncDataStore) -> int:
    """The bytes of every record in the store (in a bucket: one listing of its objects,
    not `list_contents`, which reads each entry's component record)."""
    backend = store.backend
    if isinstance(backend, ObjectBackend):
        listing = functools.partial(backend.objects.listing, backend.name(ENTRIES))
        objects = await anyio.to_thread.run_sync(lambda: list(listing()))
        return sum(int(item["Size"]) for item in objects if str(item["Key"]).endswith(".rec"))
    return sum(entry.size for entry in await store.list_contents())


def lists_by_server_time(make_store: StoreFactory) -> None:
    """Skip a check of eviction by stored time where the listing dates entries by the
    server's clock (S3's LastModified), which this test's clock cannot move."""
    if make_store.backend == "s3":  # type: ignore[attr-defined]
        pytest.skip("a bucket lists entries with S3's LastModified: the server's clock")


@pytest.mark.slow
async def test_max_size_holds_after_every_store_and_the_recently_read_survive(
    make_store: StoreFactory, moving_clock: list[float]
) -> None:
    """200 x 1 MB into 50 MB: the store is within 50 MB whenever a store returns, and the
    20 entries read most recently are all still there at the end. (In a bucket, where
    each request to the test server costs ~10 ms, 60 x 1 MB into 15 MB, 6 of them read.)"""
    count, limit, hot_count = (60, 15, 6) if make_store.backend == "s3" else (200, 50, 20)  # type: ignore[attr-defined]
    async with make_store(max_size=f"{limit}MB") as store:
        value = b"x" * MB
        hot = [item(n) for n in range(hot_count)]
        for n, component in enumerate(hot):
            at(n)
            await store.store(component, "v", value)
        for n in range(hot_count, count):
            at(n * 120.0)  # two minutes a step
            await store.store(item(n), "v", value)
            assert await total_size(store) <= limit * MB  # (records are ~1 MB + a header)
            if n % 5 == 0:  # keep the first ones in use
                for component in hot:
                    assert await store.retrieve(component, "v") == value
        for component in hot:
            assert await store.contains(component, "v")
        stored = await store.list_contents()
        assert limit * 0.8 <= len(stored) <= limit
        assert store.stats.evicted == count - len(stored)


async def test_max_entries_evicts_least_recently_used_first_down_to_ninety_percent(
    make_store: StoreFactory, moving_clock: list[float]
) -> None:
    lists_by_server_time(make_store)
    async with make_store(max_entries=10) as store:
        for n in range(10):
            at(n * 100.0)
            await store.store(item(n), "v", n)
        at(2_000.0)
        assert await store.retrieve(item(0), "v") == 0  # read: now the most recent use
        at(3_000.0)
        await store.store(item(10), "v", 10)  # the 11th: over the limit, down to 9
        left = {entry.key for entry in await store.list_contents()}
        assert len(left) == 9
        assert store.key_of(item(0)) in left
        assert store.key_of(item(10)) in left
        assert store.key_of(item(1)) not in left  # least recently used
        assert store.key_of(item(2)) not in left


async def test_a_worker_store_of_a_limited_store_keeps_its_read_notes(
    make_store: StoreFactory, moving_clock: list[float]
) -> None:
    """What an executor's worker reads counts for eviction: its store, opened from the
    spec, writes its last batch of read notes at close, as the caller's store does (the
    worker's store was assembled without its limiter and dropped them: an entry read only
    in workers ranked as never read, and was evicted first)."""
    lists_by_server_time(make_store)
    async with make_store(max_entries=10) as store:
        if store.spec is None:
            pytest.skip("a store only this process reaches has no workers")
        for n in range(10):
            at(n * 100.0)
            await store.store(item(n), "v", n)
        at(2_000.0)
        worker = WorkerStore(store.spec)
        await worker.lifecycle.ready()
        assert await worker.host.lookup(store.key_of(item(0)), "v", True) == 0
        await worker.aclose()
        at(3_000.0)
        await store.store(item(10), "v", 10)  # over the limit: the least recently used go
        left = {entry.key for entry in await store.list_contents()}
        assert store.key_of(item(0)) in left  # read by the worker: the most recent use
        assert store.key_of(item(1)) not in left


async def test_entries_read_again_and_again_within_a_minute_stay_the_most_recent(
    make_store: StoreFactory, moving_clock: list[float]
) -> None:
    """A hot entry read after every store, a second apart, is never the least recently
    used: each read counts, not only the first in a minute (which ranked it behind every
    entry stored since, and evicted it)."""
    lists_by_server_time(make_store)
    async with make_store(max_entries=10) as store:
        hot = [item(n) for n in range(3)]
        for n, component in enumerate(hot):
            at(float(n))
            await store.store(component, "v", n)
        for n in range(3, 40):
            at(float(n))
            await store.store(item(n), "v", n)
            for number, component in enumerate(hot):
                assert await store.retrieve(component, "v") == number
        assert store.stats.evicted > 0
        for component in hot:
            assert await store.contains(component, "v")


async def test_max_age_and_expire_make_misses_after_their_time(
    make_store: StoreFactory, moving_clock: list[float]
) -> None:
    async with make_store(max_age="1h") as store:
        at(0.0)
        await store.store(item(1), "v", "old")
        await store.store(item(2), "v", "brief", expire=60)
        await store.store_many([(item(3), "v", "brief too")], expire="2m")
        assert await store.retrieve(item(2), "v") == "brief"
        at(61.0)
        assert await store.retrieve(item(2), "v") is None  # its own expiry
        assert await store.retrieve(item(3), "v") == "brief too"
        assert await store.retrieve_many([(item(3), "v"), (item(2), "v")]) == ["brief too", None]
        assert await store.retrieve(item(1), "v") == "old"
        at(3601.0)
        assert await store.retrieve(item(1), "v") is None  # the store's max_age
        assert await store.get_or_compute(item(1), "v", lambda: "new") == "new"
        assert await store.retrieve(item(1), "v") == "new"
        lists_by_server_time(make_store)
        at(3601.0 + 3600 * 0.2)  # a write after a tenth of max_age looks at the store
        await store.store(item(4), "v", 4)
        left = {entry.key for entry in await store.list_contents()}
        assert store.key_of(item(2)) not in left  # stored at 0: older than an hour
        assert store.key_of(item(1)) in left  # stored again at 3601


async def test_an_entry_expires_without_a_store_limit(
    make_store: StoreFactory, moving_clock: list[float]
) -> None:
    async with make_store() as store:
        at(0.0)
        await store.store(item(1), "v", 1, expire="1d")
        # the clock is real time plus an offset: a store that took over a second (a loaded
        # machine, Django on PostgreSQL with payloads in S3) made "one second before its
        # expiry" an expired entry; so well before it, and exactly at it below
        at(86_000.0)
        assert await store.retrieve(item(1), "v") == 1
        at(86_400.0)
        assert await store.retrieve(item(1), "v") is None
        assert store.stats.misses == 1
        calls = []

        def compute() -> int:
            calls.append(1)
            return 2

        assert await store.get_or_compute(item(1), "v", compute) == 2
        assert calls == [1]


async def test_locked_entries_are_never_evicted(
    make_store: StoreFactory, moving_clock: list[float]
) -> None:
    if make_store.backend == "memory":  # type: ignore[attr-defined]
        pytest.skip("a memory store has no locks: one process, whose flights it knows")
    async with make_store(max_entries=4) as store:
        for n in range(4):
            at(n * 100.0)
            await store.store(item(n), "v", n)
        async with await open_store(store.spec) as other:  # another holder of locks
            lock = other.backend.lock(store.key_of(item(0)), "v", None)
            async with lock as locked:
                assert locked
                at(1_000.0)
                await store.store(item(4), "v", 4)
                left = {entry.key for entry in await store.list_contents()}
                assert store.key_of(item(0)) in left  # the oldest, but locked
                assert store.key_of(item(1)) not in left
                assert len(left) <= 4


Cut = Callable[[Callable[[], Coroutine[Any, Any, None]], anyio.Event], Coroutine[Any, Any, None]]


async def _a_trim_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut: Cut) -> None:
    """A store's trim is cut off while it evicts (`cut` starts the write that trims and
    cancels it once it evicts); the next write over the limit trims again and evicts."""
    from adatastore import AsyncShelveDataStore

    real_evict = _ops.evict
    evicting = anyio.Event()

    async def stuck(backend: Any, victims: Any) -> Any:
        evicting.set()
        await anyio.sleep_forever()

    async with AsyncShelveDataStore(tmp_path / "files", max_entries=3) as store:
        for n in range(3):
            at(n * 100.0)
            await store.store(item(n), "v", n)
        monkeypatch.setattr(_ops, "evict", stuck)
        at(1_000.0)
        await cut(lambda: store.store(item(3), "v", 3), evicting)
        assert evicting.is_set(), "the store did not trim"
        assert store.stats.evicted == 0
        monkeypatch.setattr(_ops, "evict", real_evict)
        at(2_000.0)
        await store.store(item(4), "v", 4)  # a trim again: its lock was let go
        assert store.stats.evicted >= 2
        assert len(await store.list_contents()) <= 3
        assert await store.retrieve(item(4), "v") == 4


@pytest.mark.asyncio_only
async def test_a_trim_cancelled_by_task_cancel_lets_the_next_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moving_clock: list[float]
) -> None:
    """Eviction is an operation the driver runs: cancelled mid-way (asyncio's
    ``Task.cancel``), the driver closes it, so its one-trim-at-a-time lock is released
    (held, every later trim would find a trim running and skip: the limits unenforced)."""
    import asyncio

    async def cut(write: Callable[[], Coroutine[Any, Any, None]], evicting: anyio.Event) -> None:
        task = asyncio.ensure_future(write())
        await evicting.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    await _a_trim_cut_off(tmp_path, monkeypatch, cut)


async def test_a_trim_cancelled_by_a_cancel_scope_lets_the_next_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moving_clock: list[float]
) -> None:
    """As above, cancelled by an anyio scope (on asyncio and trio)."""

    async def cut(write: Callable[[], Coroutine[Any, Any, None]], evicting: anyio.Event) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(write)
            await evicting.wait()
            group.cancel_scope.cancel()

    await _a_trim_cut_off(tmp_path, monkeypatch, cut)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_size": "lots"}, "max_size"),
        ({"max_size": 0}, "max_size"),
        ({"max_size": True}, "max_size"),
        ({"max_entries": 0}, "max_entries"),
        ({"max_entries": 1.5}, "max_entries"),
        ({"max_age": "-1d"}, "max_age"),
        ({"max_age": float("inf")}, "max_age"),
        ({"on_bad_entry": "ignore"}, "on_bad_entry"),
    ],
)
def test_bad_limits_are_configuration_errors(options: dict[str, object], message: str) -> None:
    from adatastore import AsyncMemoryDataStore

    with pytest.raises(ConfigurationError, match=message):
        AsyncMemoryDataStore(**options)  # type: ignore[arg-type]


async def test_a_bad_expire_is_a_configuration_error(make_store: StoreFactory) -> None:
    async with make_store() as store:
        with pytest.raises(ConfigurationError, match="expire"):
            await store.store(item(1), "v", 1, expire="soon")
        assert not await store.contains(item(1), "v")


WORKER = """
import json, random, sys
from adatastore import open_store_sync
from components import PlainComponent
from faults import expected, is_whole

url, role, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
options = {"max_entries": 20} if role == "evictor" else {}
writer = 0 if role == "evictor" else 1
whole = missing = 0
with open_store_sync(url, **options) as store:
    for sequence in range(count):
        mine = PlainComponent({"w": writer, "s": sequence})
        store.store(mine, "v", expected(writer, sequence, big=False))
        other = PlainComponent({"w": random.choice((0, 1)), "s": random.randrange(sequence + 1)})
        value = store.retrieve(other, "v")
        if value is None:
            missing += 1
        elif is_whole(value):
            whole += 1
        else:
            raise SystemExit(f"torn or mixed value: {value!r:.200}")
    print(json.dumps({"whole": whole, "missing": missing, "evicted": store.stats.evicted}))
"""


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
@pytest.mark.slow
def test_eviction_beside_another_process_reading_and_writing(tmp_path: Path, backend: str) -> None:
    """One process keeps its store at 20 entries while another writes and reads the same
    storage: neither fails, every value read is whole (or a miss)."""
    count = 60 if backend == "s3" else 300
    with store_url(backend, tmp_path) as url:
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, url, role, str(count)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=subprocess_env(),
            )
            for role in ("evictor", "other")
        ]
        results = []
        for process in processes:
            out, err = process.communicate(timeout=600)
            assert process.returncode == 0, err
            results.append(json.loads(out.splitlines()[-1]))
        evictor, other = results
        assert evictor["evicted"] > 0
        assert evictor["whole"] + other["whole"] > 0
        with open_store_sync(url) as store:
            assert len(store.list_contents()) <= 20 + count  # the other's writes since


@pytest.mark.parametrize("kind", ["sqlite", "files", "memory"])
def test_the_blocking_api_keeps_the_limits_too(
    tmp_path: Path, kind: str, moving_clock: list[float]
) -> None:
    """The blocking classes run the same operations (reads noted, trims after writes)
    in the calling thread; the last read times are written when the store closes."""
    from adatastore import MemoryDataStore, ShelveDataStore, SQLiteDataStore

    def make() -> SyncDataStore[Any]:
        if kind == "sqlite":
            return SQLiteDataStore(str(tmp_path / "s.db"), max_entries=5)
        if kind == "files":
            return ShelveDataStore(str(tmp_path / "files"), max_entries=5)
        return MemoryDataStore(max_entries=5)

    with make() as store:
        for n in range(5):
            at(n * 100.0)
            store.store(item(n), "v", n)
        at(1_000.0)
        assert store.retrieve(item(0), "v") == 0
        at(2_000.0)
        store.store(item(5), "v", 5)
        left = {entry.key for entry in store.list_contents()}
        assert len(left) == 4
        assert store.key_of(item(0)) in left
        assert store.key_of(item(1)) not in left
        assert store.async_store.stats.evicted == 2
        at(3_000.0)
        assert store.retrieve(item(3), "v") == 3  # noted; written when the store closes
    if kind == "memory":
        return
    with make() as store:  # item 3 was read after 4 and 0 were last used: they go first
        at(4_000.0)
        store.store(item(6), "v", 6)
        store.store(item(7), "v", 7)
        left = {entry.key for entry in store.list_contents()}
        assert store.key_of(item(3)) in left
        assert store.key_of(item(4)) not in left
        assert store.key_of(item(0)) not in left


async def test_warm_keeps_the_store_within_its_limits(
    make_store: StoreFactory, moving_clock: list[float]
) -> None:
    async with make_store(max_entries=10) as store:
        report = await store.warm([item(n) for n in range(30)], "v", lambda c: c.parameters)
        assert report.computed == 30
        assert len(await store.list_contents()) <= 10
        assert store.stats.evicted >= 20


async def test_warm_computes_expired_entries_again(
    make_store: StoreFactory, moving_clock: list[float]
) -> None:
    """An expired entry is a miss for `warm` too (it reads what it finds stored)."""
    lists_by_server_time(make_store)  # (its trims would evict by the server's clock)
    async with make_store(max_age="1h") as store:
        at(0.0)
        await store.store(item(1), "v", "old")
        await store.store(item(2), "v", "brief", expire=60)
        await store.store(item(3), "v", "fresh")
        at(120.0)
        await store.store(item(3), "v", "fresh")
        at(3_700.0)
        await store.store(item(3), "v", "fresh")  # stored at 3700: within the hour
        report = await store.warm([item(n) for n in (1, 2, 3)], "v", lambda c: "new")
        assert (report.computed, report.already_stored) == (2, 1)
        assert await store.retrieve_many([(item(n), "v") for n in (1, 2, 3)]) == [
            "new",
            "new",
            "fresh",
        ]
