"""The SQLite back-end: processes, large payloads, cancellation, schema, closing."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import anyio
import numpy as np
import pytest
from components import SimpleComponent
from helpers import run_python, subprocess_env

from adatastore import AsyncSQLiteDataStore, SQLiteDataStore
from adatastore._runtime.connection import ConnectionThread
from adatastore.backends import sqlite as sqlite_backend
from adatastore.errors import ConfigurationError, CorruptEntryError, StoreClosedError

pytestmark = pytest.mark.asyncio_only  # aiosqlite runs on asyncio only


def payload_files(path: Path) -> list[Path]:
    return sorted(path.with_name(path.name + "-payloads").rglob("*.rec"))


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


WRITER = """
import sys
from adatastore import SQLiteDataStore
from components import SimpleComponent
store = SQLiteDataStore(sys.argv[1])
me = int(sys.argv[2])
for i in range(500):
    # distinct entries, plus one entry every process overwrites
    store.store(SimpleComponent({"process": me, "i": i}), "value", {"me": me, "i": i})
    store.store(SimpleComponent({"shared": i % 10}), "last", (me, i, "x" * (i % 50)))
store.close()
"""


@pytest.mark.slow
def test_four_processes_storing_to_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"  # does not exist yet: they also race to create it
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WRITER), str(path), str(n)],
            env=subprocess_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    errors = [p.communicate(timeout=300)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], errors
    assert errors == ["", "", "", ""]
    with SQLiteDataStore(path) as store:
        for me in range(4):
            for i in range(500):
                value = store.retrieve(SimpleComponent({"process": me, "i": i}), "value")
                assert value == {"me": me, "i": i}
        for k in range(10):
            me, i, text = store.retrieve(SimpleComponent({"shared": k}), "last")
            assert i % 10 == k
            assert text == "x" * (i % 50)
        assert len(store.list_contents()) == 4 * 500 + 10
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]
    assert rows(path, "SELECT count(*) FROM entries") == [(2010,)]
    assert rows(path, "SELECT count(*) FROM components") == [(2010,)]


@pytest.mark.anyio
async def test_large_array_goes_to_a_file_beside_the_database(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    array = np.random.default_rng(0).standard_normal(100 * 2**20 // 8)  # 100 MiB
    c = SimpleComponent({"big": True})
    async with AsyncSQLiteDataStore(path) as store:
        await store.store(c, "array", array)
        back = await store.retrieve(c, "array")
        np.testing.assert_array_equal(back, array)
        assert back.flags.writeable
        del back
        (first,) = payload_files(path)
        assert path.stat().st_size < 1_000_000  # the payload is not in the database
        (entry,) = await store.list_contents()
        assert entry.size > array.nbytes
        # a replaced or deleted record's file is removed by the write or delete itself
        await store.store(c, "array", array[: 2**20])
        (second,) = payload_files(path)
        assert second != first
        assert await store.delete(c, "array") == 1
        assert payload_files(path) == []
        await store.store(c, "array", array[: 2**20])
        await store.store(c, "array", array[:10])  # a small value replaces a file
        assert payload_files(path) == []
        assert rows(path, "SELECT count(*) FROM garbage") == [(0,)]
    assert payload_files(path) == []
    assert rows(path, "SELECT count(*) FROM garbage") == [(0,)]


@pytest.mark.anyio
async def test_two_hundred_concurrent_tasks(tmp_path: Path) -> None:
    async with AsyncSQLiteDataStore(tmp_path / "tasks.db") as store:
        results: dict[int, object] = {}

        async def work(i: int) -> None:
            c = SimpleComponent({"task": i})
            await store.store(c, "v", [i] * (i % 7))
            results[i] = await store.retrieve(c, "v")

        async with anyio.create_task_group() as group:
            for i in range(200):
                group.start_soon(work, i)
        assert results == {i: [i] * (i % 7) for i in range(200)}
        assert len(await store.list_contents()) == 200


@pytest.mark.anyio
@pytest.mark.parametrize("size", [100, 300_000], ids=["in-database", "in-file"])
async def test_cancelled_stores_leave_no_partial_entry_and_no_lock(
    tmp_path: Path, size: int
) -> None:
    path = tmp_path / "cancel.db"
    async with AsyncSQLiteDataStore(path) as store:
        c = SimpleComponent({"c": 1})
        await store.store(c, "v", b"old" * (size // 3))
        for delay in [0, 0, 1e-5, 1e-4, 3e-4, 1e-3, 3e-3]:
            with anyio.move_on_after(delay):
                await store.store(c, "v", b"new" * (size // 3))
            value = await store.retrieve(c, "v")
            assert value in (b"old" * (size // 3), b"new" * (size // 3))
            # another connection can write at once: no transaction was left open
            async with AsyncSQLiteDataStore(path, busy_timeout=5) as other:
                await other.store(SimpleComponent({"other": delay}), "v", 1)
            await store.store(c, "v", b"old" * (size // 3))
        referenced = {r[0] for r in rows(path, "SELECT file FROM entries WHERE file IS NOT NULL")}
    assert {p.name for p in payload_files(path)} == referenced


@pytest.mark.anyio
async def test_close_releases_connections_and_threads(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    store = AsyncSQLiteDataStore(tmp_path / "close.db")
    await store.store(SimpleComponent({}), "v", 1)
    connections = [t for t in set(threading.enumerate()) - before if "AnyIO worker" not in t.name]
    assert len(connections) == 2  # a writer and a reader
    await store.aclose()
    await store.aclose()
    with pytest.raises(StoreClosedError):
        await store.retrieve(SimpleComponent({}), "v")
    for thread in connections:
        thread.join(timeout=10)  # each was told to stop before aclose returned
        assert not thread.is_alive()


@pytest.mark.anyio
async def test_bad_paths_and_foreign_databases(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is a directory"):
        await AsyncSQLiteDataStore(tmp_path).open()
    (tmp_path / "text.db").write_text("this is not a database, but long enough to look at" * 50)
    with pytest.raises(ConfigurationError, match="cannot"):
        await AsyncSQLiteDataStore(tmp_path / "text.db").open()
    foreign = tmp_path / "foreign.db"
    with contextlib.closing(sqlite3.connect(foreign)) as db:
        db.execute("CREATE TABLE accounts (id INTEGER)")
    with pytest.raises(ConfigurationError, match="something else"):
        await AsyncSQLiteDataStore(foreign).open()
    assert rows(foreign, "SELECT name FROM sqlite_master") == [("accounts",)]


@pytest.mark.anyio
async def test_schema_version_is_recorded_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "schema.db"
    async with AsyncSQLiteDataStore(path) as store:
        await store.store(SimpleComponent({}), "v", 1)
    assert rows(path, "PRAGMA user_version") == [(sqlite_backend.SCHEMA_VERSION,)]
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {sqlite_backend.SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigurationError, match="upgrade adatastore"):
        await AsyncSQLiteDataStore(path).open()


@pytest.mark.anyio
async def test_component_metadata_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    upstream = SimpleComponent({"seed": 3})
    c = SimpleComponent({"a": 1, "b": {"c": [1.5, "x"]}}, input=upstream, version="2.1")
    async with AsyncSQLiteDataStore(path) as store:
        await store.store(c, "v", 1)
        key, upstream_key = store.key_of(c), store.key_of(upstream)
    ((full_type, version, parameters, input_keys),) = rows(
        path, "SELECT full_type, version, parameters, input_keys FROM components"
    )
    assert (full_type, version) == ("components.SimpleComponent", "2.1")
    assert parameters == '{"a": 1, "b": {"c": [1.5, "x"]}}'
    assert input_keys == f'["{upstream_key}"]'
    assert rows(path, "SELECT key FROM entries") == [(key,)]


@pytest.mark.anyio
async def test_damaged_rows_raise_corrupt_entry_error(tmp_path: Path) -> None:
    path = tmp_path / "damage.db"
    async with AsyncSQLiteDataStore(path) as store:
        c = SimpleComponent({"x": 1})
        await store.store(c, "v", list(range(100)))
        await store.store(SimpleComponent({"x": 2}), "v", "intact")
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            (payload,) = db.execute(
                "SELECT payload FROM entries WHERE key = ?", (store.key_of(c),)
            ).fetchone()
            damaged = bytearray(payload)
            damaged[-5] ^= 0xFF
            db.execute(
                "UPDATE entries SET payload = ? WHERE key = ?", (bytes(damaged), store.key_of(c))
            )
        with pytest.raises(CorruptEntryError):
            await store.retrieve(c, "v")
        assert await store.retrieve(SimpleComponent({"x": 2}), "v") == "intact"


def test_blocking_store_and_clean_exit(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from adatastore import SQLiteDataStore
        from components import SimpleComponent
        store = SQLiteDataStore(sys.argv[1])   # left open on purpose
        store.store(SimpleComponent({"a": 1}), "x", [1, 2])
        print(store.retrieve(SimpleComponent({"a": 1}), "x"))
        """
    )
    result = run_python(code, str(tmp_path / "exit.db"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[1, 2]"
    assert result.stderr == ""


def test_an_async_store_left_open_does_not_hang_the_exit(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import asyncio, sys
        from adatastore import AsyncSQLiteDataStore
        from components import SimpleComponent

        async def main():
            store = AsyncSQLiteDataStore(sys.argv[1])   # never closed
            await store.store(SimpleComponent({"a": 1}), "x", 1)
            print(await store.retrieve(SimpleComponent({"a": 1}), "x"))
            return store

        kept = asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "open.db")],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_filesystem_type_reads_the_mount_table(tmp_path: Path) -> None:
    from adatastore._storage import fsio as _fsio

    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/vda / ext4 rw 0 0\n"
        f"server:/export {tmp_path}/shared nfs4 rw 0 0\n"
        f"//nas/lab {tmp_path}/with\\040space cifs rw 0 0\n"
    )
    assert _fsio.filesystem_type(str(tmp_path / "shared" / "x.db"), str(mounts)) == "nfs4"
    assert _fsio.filesystem_type(str(tmp_path / "with space" / "x"), str(mounts)) == "cifs"
    assert _fsio.filesystem_type(str(tmp_path / "sharedother"), str(mounts)) == "ext4"
    assert _fsio.filesystem_type("/x", str(tmp_path / "missing")) is None


@pytest.mark.anyio
async def test_network_filesystem_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from adatastore._storage import fsio as _fsio
    from adatastore.errors import NetworkFilesystemWarning

    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\nserver:/export {tmp_path}/nfs nfs4 rw 0 0\n")
    monkeypatch.setattr(_fsio, "MOUNTS_FILE", str(mounts))
    with pytest.warns(NetworkFilesystemWarning, match=r"network file system \(nfs4\).*PostgreSQL"):
        async with AsyncSQLiteDataStore(tmp_path / "nfs" / "cache.db") as store:
            await store.store(SimpleComponent({}), "v", 1)
    async with AsyncSQLiteDataStore(tmp_path / "local" / "cache.db") as local:  # no warning
        await local.store(SimpleComponent({}), "v", 1)


@pytest.mark.anyio
async def test_a_schema_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    # tests/data/store-v1.db was written by adatastore 0.1 (schema 1: WITHOUT ROWID
    # tables), with a payload file for its large entry.
    import shutil

    data = Path(__file__).parent / "data"
    path = tmp_path / "store-v1.db"
    shutil.copy(data / "store-v1.db", path)
    shutil.copytree(data / "store-v1.db-payloads", tmp_path / "store-v1.db-payloads")
    assert rows(path, "PRAGMA user_version") == [(1,)]
    up = SimpleComponent({"seed": 3})
    down = SimpleComponent({"a": 1, "b": {"c": 2.5}}, input=up, version="2")
    async with AsyncSQLiteDataStore(path) as store:
        assert await store.retrieve(up, "spikes") == [1, 2, 3]
        assert await store.retrieve(down, "rates") == {"mean": 4.5}
        assert await store.retrieve(down, "note") == "text"
        assert await store.retrieve(SimpleComponent({"large": True}), "blob") == (
            bytes(range(256)) * 1024
        )
        assert len(await store.list_contents()) == 4
        assert (await store.verify()).ok
        await store.store(down, "note", "replaced")  # the upgraded tables take writes
        assert await store.delete(up) == 1
    assert rows(path, "PRAGMA user_version") == [(sqlite_backend.SCHEMA_VERSION,)]
    assert rows(path, "SELECT count(*) FROM entries") == [(3,)]
    assert rows(path, "SELECT count(*) FROM components") == [(2,)]
    names = {name for (name,) in rows(path, "SELECT name FROM sqlite_master")}
    assert not {"entries_v1", "components_v1"} & names
    assert {"store_entry", "store_entry_insert", "entries_delete"} <= names
    async with AsyncSQLiteDataStore(path) as store:  # opening again changes nothing
        assert await store.retrieve(down, "note") == "replaced"


def test_a_unit_interrupted_in_the_callers_thread_leaves_no_transaction(tmp_path: Path) -> None:
    """`run_here` runs a unit in the caller's thread, where Ctrl-C can stop it anywhere: a
    transaction it leaves open is rolled back, so the next writer is not locked out."""
    path = tmp_path / "units.db"
    thread = ConnectionThread(
        lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False), "units"
    )

    def interrupted(connection: sqlite3.Connection) -> None:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("CREATE TABLE half (x)")
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            thread.run_here(interrupted, 5)
        with contextlib.closing(sqlite3.connect(path, timeout=0)) as other:
            other.execute("CREATE TABLE other (x)")  # SQLite's write lock is free
            tables = {name for (name,) in other.execute("SELECT name FROM sqlite_master")}
        assert tables == {"other"}
        assert thread.run_here(lambda c: c.execute("SELECT 41 + 1").fetchone(), 5) == (42,)
        assert thread.run(lambda c: c.in_transaction) is False
    finally:
        thread.close()
        thread.join(10)
