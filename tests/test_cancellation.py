"""Cancellation by asyncio's own mechanisms, not only anyio's scopes, on every back-end.

`Task.cancel()`, ``asyncio.wait_for``, ``asyncio.timeout``, a failing ``TaskGroup``
sibling and an anyio cancel scope each cancel (a) a store of a large value while another
connection holds the database's write lock, and (b) the leader of a `get_or_compute` in
the middle of its computation. Afterwards the entry is the old value or the new one (never
a row without its file, never a transaction left open), and the leader's computation was
stored and shared instead of being computed again. Ctrl-C in a blocking call is checked in
a real process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from components import SimpleComponent
from helpers import StoreFactory, eventually, subprocess_env

from adatastore import AsyncDataStore, AsyncDjangoORMDataStore, AsyncSQLiteDataStore
from adatastore.backends._bucket_payloads import BucketPayloads

pytestmark = [pytest.mark.anyio, pytest.mark.asyncio_only]

MECHANISMS = ["task-cancel", "wait_for", "timeout", "taskgroup", "anyio-scope"]
LARGE = 300_000  # goes to a payload file on SQLite, to data_root_dir on Django


def with_files(make_store: StoreFactory, tmp_path: Path) -> AsyncDataStore:
    """A store of the back-end; Django's keep payloads under a data_root_dir (files and
    rows must then agree)."""
    if make_store.backend.startswith("django"):  # type: ignore[attr-defined]
        return make_store(data_root_dir=tmp_path / "data")
    return make_store()


@contextlib.contextmanager
def write_lock_held(store: AsyncDataStore, component: object) -> Iterator[Callable[[], None]]:
    """Hold the storage's write lock from another connection; yields the release."""
    released = False
    if isinstance(store, AsyncSQLiteDataStore):
        other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                other.execute("COMMIT")

        try:
            yield release
        finally:
            release()
            other.close()
        return
    if isinstance(store, AsyncDjangoORMDataStore):
        yield from _django_lock(store, component)
        return
    yield lambda: None  # memory, files and s3: no write lock to hold


def _django_lock(store: AsyncDjangoORMDataStore, component: object) -> Iterator[Callable[[], None]]:
    from adatastore.backends.django._rows import digest as _digest

    settings = store.backend._database or {}
    engine = str(settings.get("ENGINE", ""))
    key_digest = _digest(store.key_of(component))
    if engine.endswith("sqlite3"):
        other: Any = sqlite3.connect(settings["NAME"], isolation_level=None)
        other.execute("BEGIN IMMEDIATE")

        def commit() -> None:
            other.execute("COMMIT")

    elif engine.endswith("postgresql"):
        import psycopg

        other = psycopg.connect(
            host=settings["HOST"],
            port=settings["PORT"],
            user=settings["USER"],
            dbname=settings["NAME"],
        )
        other.execute(
            "SELECT 1 FROM adatastore_componentstate WHERE key_digest = %s FOR UPDATE",
            [key_digest],
        )
        commit = other.commit
    else:
        import pymysql

        other = pymysql.connect(
            host=settings["HOST"],
            port=int(settings["PORT"]),
            user=settings["USER"],
            password=settings["PASSWORD"],
            database=settings["NAME"],
        )
        with other.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(
                "SELECT 1 FROM adatastore_componentstate WHERE key_digest = %s FOR UPDATE",
                [key_digest],
            )
        commit = other.commit
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            commit()

    try:
        yield release
    finally:
        release()
        other.close()


async def cancel_by(
    mechanism: str,
    work: Callable[[], Coroutine[Any, Any, object]],
    started: Callable[[], bool],
    release: Callable[[], None],
    blocked: bool = True,
) -> None:
    """Run `work`; once `started()` holds, cancel it by `mechanism`, then `release()`.

    Checks that the cancellation reached the caller as that mechanism promises (when
    the work is not `blocked` until `release()`, it may also have finished first).
    """
    if mechanism == "task-cancel":
        task = asyncio.create_task(work())
        await eventually(started)
        task.cancel()
        release()
        try:
            await task
            assert not blocked, "the cancelled task finished"
        except asyncio.CancelledError:
            pass
    elif mechanism == "wait_for":
        timeout = 0.5
        while True:
            task = asyncio.create_task(asyncio.wait_for(work(), timeout=timeout))
            await eventually(lambda task=task: started() or task.done())  # type: ignore[misc]
            if started():
                break
            # the timeout fired before the work got going (a first open of a Django store
            # on PostgreSQL took longer under load): the same again, with a longer timeout
            with contextlib.suppress(TimeoutError):
                await task
            timeout *= 4
        # wait_for cancels the work at its timeout, then waits for it: release then
        await eventually(lambda: task.done() or _cancelling_others(task))
        release()
        try:
            await task
            assert not blocked, "wait_for's timeout did not cancel the work"
        except TimeoutError:
            pass
    elif mechanism == "timeout":

        async def bounded() -> None:
            async with asyncio.timeout(None) as deadline:
                holder.append(deadline)
                await work()

        holder: list[asyncio.Timeout] = []
        task = asyncio.create_task(bounded())
        await eventually(lambda: bool(holder) and started())
        if not task.done():
            holder[0].reschedule(asyncio.get_running_loop().time())  # expires now
        release()
        try:
            await task
            assert not blocked, "asyncio.timeout did not cancel the work"
        except TimeoutError:
            pass
    elif mechanism == "taskgroup":

        async def failing_sibling() -> None:
            await eventually(started)
            raise ValueError("a sibling failed")

        async def group() -> None:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(work())
                tasks.create_task(failing_sibling())

        task = asyncio.create_task(group())
        await eventually(started)
        # The group cancels `work` as soon as the sibling fails; release after that.
        await eventually(lambda: task.done() or _cancelling_others(task))
        release()
        with pytest.raises(ExceptionGroup) as caught:
            await task
        assert caught.group_contains(ValueError)
    elif mechanism == "anyio-scope":

        async def scoped() -> None:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                await work()

        scopes: list[anyio.CancelScope] = []
        task = asyncio.create_task(scoped())
        await eventually(lambda: bool(scopes) and started())
        scopes[0].cancel()
        release()
        await task  # the scope swallows its own cancellation
        # work that cannot be cut (a write in a thread) may finish instead: fine too
        assert scopes[0].cancel_called
    else:  # pragma: no cover
        raise ValueError(mechanism)


def _cancelling_others(task: asyncio.Task[Any]) -> bool:
    return any(t.cancelling() for t in asyncio.all_tasks() if t is not task)


# -- a store cancelled while it waits for the write lock --------------------------------------


@pytest.mark.parametrize("operation", ["store", "store_many", "delete"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_cancelled_write_leaves_old_or_new(
    make_store: StoreFactory, tmp_path: Path, mechanism: str, operation: str
) -> None:
    """A store, a 150-item store_many (its first item replacing the entry) or a delete,
    cancelled while another connection holds the write lock: each entry is then as it
    was or as the call would have left it."""
    c = SimpleComponent({"entry": 1})
    old, new = b"o" * LARGE, b"n" * LARGE
    others = [SimpleComponent({"other": n}) for n in range(149)]
    async with with_files(make_store, tmp_path) as store:
        await store.store(c, "v", old)
        work: Callable[[], Coroutine[Any, Any, object]]
        if operation == "store":
            work = functools.partial(store.store, c, "v", new)
            outcomes: tuple[object, ...] = (old, new)
        elif operation == "store_many":
            items = [(c, "v", new), *[(o, "v", n) for n, o in enumerate(others)]]
            work = functools.partial(store.store_many, items)
            outcomes = (old, new)
        else:
            work = functools.partial(store.delete, c, "v")
            outcomes = (old, None)
        with write_lock_held(store, c) as release:
            await cancel_by(
                mechanism,
                work,
                started=lambda: True,
                release=release,
                blocked=make_store.backend not in ("memory", "files", "s3"),  # type: ignore[attr-defined]
            )
        # What was cancelled still runs to its end; wait for it by storing through the
        # same store (SQLite and Django serialise writes per process).
        await store.store(SimpleComponent({"entry": 2}), "v", b"x")
        await eventually(lambda: not _temporary_files(store))
        value = await store.retrieve(c, "v")
        assert value in outcomes
        stored_others = await store.retrieve_many([(o, "v") for o in others])
        if operation == "store_many":  # all or nothing
            expected_others = list(range(149)) if value == new else [None] * 149
            assert stored_others == expected_others
        report = await store.verify()
        assert report.ok, report
        listed = await store.list_contents()
        assert report.checked == len(listed)
        assert len(listed) == 1 + (value is not None) + sum(v is not None for v in stored_others)
        if isinstance(store, AsyncSQLiteDataStore):
            assert await anyio.to_thread.run_sync(_sqlite_files_match_rows, store)


def _temporary_files(store: AsyncDataStore) -> list[Path]:
    """The temporary files under the store's directories. A directory that goes while it
    is listed (a cancelled batch still finishing in its thread removes its staging
    directory) counts as one: the store has not settled yet."""
    roots = [getattr(store, name, None) for name in ("root_dir", "payload_dir", "data_root_dir")]
    found: list[Path] = []
    for root in roots:
        if root is not None and Path(root).exists():
            try:
                found += [
                    p
                    for p in Path(root).rglob("*")
                    if p.is_file() and (".tmp" in str(p) or ".batches" in str(p))
                ]
            except FileNotFoundError as gone:
                found.append(Path(gone.filename or root))
    return found


def _sqlite_files_match_rows(store: AsyncSQLiteDataStore) -> bool:
    with contextlib.closing(sqlite3.connect(store.path)) as connection:
        rows = connection.execute("SELECT file FROM entries WHERE file IS NOT NULL").fetchall()
    referenced = {str(row[0]) for row in rows}
    if store.backend.payloads is not None:  # records in a bucket
        payloads = BucketPayloads(store.backend.payloads)
        listed = payloads.bucket.listing(payloads.prefix + "/")
        present = {item["Key"].rpartition("/")[2] for item in listed}
    else:
        present = {p.name for p in store.payload_dir.rglob("*.rec") if ".tmp" not in str(p)}
    return referenced == present


# -- the leader of get_or_compute, cancelled mid-computation -----------------------------------


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_cancelled_leader_still_stores_its_computation(
    make_store: StoreFactory, tmp_path: Path, mechanism: str
) -> None:
    c = SimpleComponent({"long": 1})
    computing = threading.Event()
    go_on = threading.Event()
    calls = []

    def compute() -> bytes:
        calls.append(1)
        computing.set()
        assert go_on.wait(30), "the test never let the computation finish"
        return b"result" * 1000

    async with with_files(make_store, tmp_path) as store:
        waiter_result: list[object] = []

        async def waiter() -> None:
            await eventually(computing.is_set)
            waiter_result.append(await store.get_or_compute(c, "v", lambda: b"again"))

        waiting = asyncio.create_task(waiter())
        await cancel_by(
            mechanism,
            lambda: store.get_or_compute(c, "v", compute),
            started=computing.is_set,
            release=go_on.set,
        )
        await waiting
        assert calls == [1]  # computed once: the waiter got the leader's value
        assert waiter_result == [b"result" * 1000]
        assert await store.retrieve(c, "v") == b"result" * 1000
        assert store.stats.computes == 1


# -- Ctrl-C in a blocking call ------------------------------------------------------------------
#
# Each child sets Python's own SIGINT handler first, as a program at a terminal has it. A
# process started in the background by a shell without job control (``cmd &`` in a
# script, ``nohup``, a CI runner's step) starts with SIGINT *ignored*, and so do all its
# children: Python then installs no KeyboardInterrupt handler, the test's SIGINT was
# dropped, and the child waited out SQLite's 60-s busy timeout ("database is locked") or
# printed nothing. That, not the load, failed these tests on a loaded machine: every run
# of this module started from a background script failed them, every run started from a
# terminal passed (issue 29, item 10).

CTRL_C = """
import faulthandler, os, signal, sys, time
import adatastore
faulthandler.dump_traceback_later(120, exit=True)  # a hang guard, past every wait
signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal (below)
from components import SimpleComponent

store = adatastore.open_store_sync(sys.argv[1])
items = [(SimpleComponent({"n": n}), "v", (b"L" * 300_000) if n % 50 == 0 else n)
         for n in range(150)]
print("started", flush=True)
started = time.monotonic()
try:
    store.store_many(items)
    print("not interrupted", flush=True)
except KeyboardInterrupt:
    print(f"interrupted {time.monotonic() - started:.2f}", flush=True)
except Exception:
    print(f"failed after {time.monotonic() - started:.2f} s", file=sys.stderr, flush=True)
    raise
sys.stdin.readline()  # the test releases the lock, then says go on
store.store(SimpleComponent({"after": 1}), "v", "usable")
print("after", store.retrieve(SimpleComponent({"after": 1}), "v"), flush=True)
"""


@pytest.mark.parametrize("backend", ["sqlite", "django-sqlite"])
@pytest.mark.slow
def test_ctrl_c_in_a_blocking_call(tmp_path: Path, backend: str) -> None:
    """KeyboardInterrupt reaches the caller at once; the interrupted batch is then written
    whole (or not at all), the store stays usable, and the process exits promptly."""
    database = tmp_path / "store.db"
    url = (
        f"sqlite:///{database}"
        if backend == "sqlite"
        else f"django+sqlite:///{database}?data_root_dir={tmp_path / 'data'}"
    )
    # create the store, then hold its write lock from here
    holder = _create_and_hold_the_write_lock(url, database)
    with _child(CTRL_C, url) as child:
        try:
            _interrupt_and_go_on(child, database, tmp_path, holder)
        finally:
            if child.poll() is None:
                child.kill()
            holder.close()
    # all or nothing, and no transaction left open: another process writes at once
    with contextlib.closing(sqlite3.connect(database, timeout=5)) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS probe (x)")
        table = "entries" if backend == "sqlite" else "adatastore_dataitem"
        (count,) = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert count in (1, 151)


CTRL_C_SMALL = """
import faulthandler, os, signal, sys, threading, time
import adatastore
faulthandler.dump_traceback_later(120, exit=True)  # a hang guard, past every wait
signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal (below)
from components import SimpleComponent

store = adatastore.open_store_sync(sys.argv[1])
print("started", flush=True)
# fault injection, not synchronisation: the store below cannot finish while the test
# holds SQLite's write lock, so the signal finds it waiting whenever it comes
sent = []
def interrupt():
    sent.append(time.monotonic())
    os.kill(os.getpid(), signal.SIGINT)
threading.Timer(0.3, interrupt).start()
try:
    store.store(SimpleComponent({"small": 1}), "v", 1)
    print("not interrupted", flush=True)
except KeyboardInterrupt:
    print(f"interrupted {time.monotonic() - sent[0]:.2f}", flush=True)
except Exception:
    print(f"failed; signal sent at {sent}, now {time.monotonic()}", file=sys.stderr, flush=True)
    raise
sys.stdin.readline()  # the test releases the lock, then says go on
store.store(SimpleComponent({"after": 1}), "v", "usable")
print("after", store.retrieve(SimpleComponent({"after": 1}), "v"), flush=True)
"""


def test_ctrl_c_reaches_a_small_blocking_store_waiting_for_another_writer(
    tmp_path: Path,
) -> None:
    """A small store of the blocking API runs in the caller's thread (no hand-off) only
    while SQLite's write lock is free: held by another process, the store waits where
    Ctrl-C reaches it at once, not inside SQLite's busy wait (60 s here)."""
    database = tmp_path / "store.db"
    url = f"sqlite:///{database}"
    holder = _create_and_hold_the_write_lock(url, database)
    with _child(CTRL_C_SMALL, url) as child:
        try:
            assert child.stdout is not None
            assert child.stdin is not None
            assert child.stdout.readline().strip() == "started"
            line = child.stdout.readline()
            assert line.startswith("interrupted"), child.communicate(timeout=30)[1][-3000:]
            _, seconds = line.split()
            assert float(seconds) < 1.0
            holder.execute("COMMIT")
            child.stdin.write("\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "after usable"
            assert child.wait(timeout=10) == 0
        finally:
            if child.poll() is None:
                child.kill()
            holder.close()
    with contextlib.closing(sqlite3.connect(database, timeout=5)) as connection:
        (count,) = connection.execute("SELECT count(*) FROM entries").fetchone()
    assert count in (1, 2)  # the interrupted store whole (finished by the thread) or not


def _create_and_hold_the_write_lock(url: str, database: Path) -> sqlite3.Connection:
    """Create the store at `url` in another process, then hold SQLite's write lock."""
    setup = subprocess.run(
        [
            sys.executable,
            "-c",
            "import adatastore,sys; adatastore.open_store_sync(sys.argv[1]).close()",
            url,
        ],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert setup.returncode == 0, setup.stderr
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def _child(code: str, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )


def _interrupt_and_go_on(
    child: subprocess.Popen[str], database: Path, tmp_path: Path, holder: sqlite3.Connection
) -> None:
    assert child.stdout is not None
    assert child.stdin is not None
    assert child.stdout.readline().strip() == "started"
    # the batch is under way (its large records written) and waits for our lock
    payloads = database.with_name(database.name + "-payloads")
    data = tmp_path / "data"
    if not _wait_for(lambda: _count_files(payloads) + _count_files(data) >= 3, 30):
        child.kill()
        pytest.fail(f"the batch did not start: {child.communicate()[1][-3000:]}")
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    line = child.stdout.readline().strip()
    if not line.startswith("interrupted"):
        child.kill()
        pytest.fail(f"the child said {line!r}: {child.communicate()[1][-3000:]}")
    assert time.monotonic() - sent < 1.0
    holder.execute("COMMIT")
    child.stdin.write("\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "after usable"
    assert child.wait(timeout=10) == 0


def _count_files(root: Path) -> int:
    try:
        return sum(1 for p in root.rglob("*.rec")) if root.exists() else 0
    except FileNotFoundError:  # a directory went while it was listed: look again
        return 0


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.01)
    return True


# -- Ctrl-C during warm(processes=True), the whole process group signalled (issue 29, item 10)

CTRL_C_WARM = """
import asyncio, faulthandler, signal, sys, time
faulthandler.dump_traceback_later(120, exit=True)  # a hang guard, past every wait
signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal (below)
from components import PlainComponent, quick_or_long
import adatastore

def main():
    components = [PlainComponent({"n": n}) for n in range(4)]
    if sys.argv[2] == "blocking":
        with adatastore.open_store_sync(sys.argv[1]) as store:
            print("started", flush=True)
            store.warm(components, "v", quick_or_long, processes=True, concurrency=4)
    else:
        async def run():
            async with await adatastore.open_store(sys.argv[1]) as store:
                print("started", flush=True)
                await store.warm(components, "v", quick_or_long, processes=True, concurrency=4)
        asyncio.run(run())

if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print(f"interrupted {time.monotonic():.3f}", flush=True)
        raise
"""


@pytest.mark.parametrize("api", ["blocking", "async"])
def test_one_ctrl_c_stops_a_warm_in_processes_at_once(tmp_path: Path, api: str) -> None:
    """A terminal's Ctrl-C reaches the pool's workers too: their KeyboardInterrupt came
    back into the blocking API's loop thread and the process hung until a second Ctrl-C.
    Now one Ctrl-C gives one KeyboardInterrupt within a second, the process and its
    workers exit, and the entries computed before it are kept."""
    database = tmp_path / "store.db"
    url = f"sqlite:///{database}"
    script = tmp_path / "warm.py"
    script.write_text(textwrap.dedent(CTRL_C_WARM))
    child = subprocess.Popen(
        [sys.executable, str(script), url, api],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
        start_new_session=True,  # a group of its own, as a terminal's foreground job
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "started"

        def stored() -> int:
            with contextlib.closing(sqlite3.connect(database, timeout=5)) as db:
                return int(db.execute("SELECT count(*) FROM entries").fetchone()[0])

        assert _wait_for(lambda: stored() == 2, 60), "the quick components were not stored"
        sent = time.monotonic()
        os.killpg(child.pid, signal.SIGINT)
        line = child.stdout.readline().split()
        assert line[:1] == ["interrupted"], child.stderr.read() if child.stderr else ""
        assert float(line[1]) - sent < 1.0
        _, errors = child.communicate(timeout=10)
        assert child.returncode != 0
        assert "KeyboardInterrupt" in errors
        assert "_runtime/portal.py" not in errors, errors
        assert "Exception in thread" not in errors, errors
        if api == "blocking":  # the traceback: the user's line, then the method called
            # (read back from its KeyboardInterrupt line: under load asyncio's child watcher
            # may log "Unknown child process pid ..." after it, for a killed worker that
            # was reaped first)
            lines = errors.rstrip().splitlines()
            end = max(n for n, line in enumerate(lines) if line.strip() == "KeyboardInterrupt")
            assert lines[end - 3].strip().startswith("store.warm("), errors
        assert _wait_for(lambda: not _group_alive(child.pid), 10), "workers outlived it"
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert stored() == 2  # what was computed before the Ctrl-C is kept


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
