"""The embedded default: one SQLite file.

Small records live in the database; records of `FILE_THRESHOLD` bytes or more go to
immutable files in a directory beside it (``<name>-payloads/``), because SQLite moves large
BLOBs at a fraction of the file system's speed (0.3-0.4 GB/s against 2-4 GB/s here).

Connections: a writer and a reader, each owned by a daemon thread (`adatastore._runtime.connection`)
and shared by every thread and event loop of the process (asyncio or trio); the blocking
API reads through a pool of read-only connections in the calling threads and writes
through the writer's thread, with no event loop in between. Every write is one unit run
whole in the writer's thread — a statement, or a transaction from ``BEGIN IMMEDIATE`` to
``COMMIT`` — so a cancelled task or Ctrl-C never leaves a transaction open, and writers of
other processes wait for SQLite's lock instead of failing (WAL and a busy timeout).

A large record's file is written first under a temporary name that carries the writer's
pid (``<name>-payloads/.tmp/<pid>-<random>.rec``), then renamed to its final name inside
the transaction that inserts its row: a row never names a missing file, and a temporary
file left by a writer that died is removed by the next open. Files of replaced or deleted
records are queued in the database by the same transaction (a trigger) and removed after
it, by whichever process gets there first.

In a forked child the store drops its parent's connections without touching them (closing
them would act on the parent's database) and opens its own on first use.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import anyio.to_thread

from .._runtime import forks as _forks
from .._runtime.connection import ConnectionThread
from .._runtime.waiting import run_to_end
from .._storage import locks as _locks
from .._storage.payloads import PayloadFiles, PayloadStore
from ..backend import Backend, BackendSpec, MapMode, RecordWrite, Used
from ..errors import ConfigurationError, StorageError
from ..records import ComponentRecord, DamagedEntry, Entry
from ..serializers import Buffer
from ._bucket_payloads import BucketPayloads
from ._sqlite_damage import COMPONENTS, parse_components, remove_component_unit
from ._sqlite_reads import reading, reading_many
from ._sqlite_sql import (
    CONTAINS,
    FILE_THRESHOLD,
    READ,
    SCHEMA_VERSION,
    Offload,
    Query,
    ReaderPool,
    Steps,
    Unit,
    check_location,
    collect,
    connect,
    delete_unit,
    fetch,
    in_row,
    one,
    open_error,
    pair_queries,
    prepare,
    release,
    run_steps,
    run_steps_blocking,
    warn_if_on_a_network_filesystem,
    write_plan,
)
from ._sqlite_used import delete_listed_unit, last_used_rows, read_notes, touch_unit
from ._used_logs import note_time

__all__ = [
    "FILE_THRESHOLD",
    "SCHEMA_VERSION",
    "AsyncSQLiteDataStore",
    "SQLiteBackend",
    "SQLiteDataStore",
]

T = TypeVar("T")


class SQLiteBackend(Backend):
    """Records in one SQLite file, large ones in files beside it (see the module
    docstring). Reads, writes and contains are written once, as steps (`Steps`) that an
    async and a blocking driver carry out; the async reads go through the reader's
    thread (215 µs per 1 KB retrieve, against 330-420 through worker threads and a pool),
    the blocking ones through a pool of connections in the calling threads."""

    supports_blocking: ClassVar[bool] = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durable: bool = False,
        busy_timeout: float = 60.0,
        create: bool = True,
        payloads: str | None = None,
    ) -> None:
        if not (isinstance(busy_timeout, int | float) and 0 <= busy_timeout <= 10**6):
            raise ConfigurationError(
                f"busy_timeout must be a number of seconds from 0 to 10**6, not {busy_timeout!r}"
            )
        self.create = create
        self.path = Path(path)  # made absolute when the store opens
        self.payload_dir = self.path.with_name(self.path.name + "-payloads")
        self.lock_dir = self.path.with_name(self.path.name + "-locks")
        self.durable = durable
        self.busy_timeout = float(busy_timeout)
        self.payloads = payloads
        """The ``s3://`` URL of the bucket holding the large records, or None: a directory
        beside the database file (`payload_dir`)."""
        self._payloads = self._new_payloads()
        self._reset()

    def _new_payloads(self) -> PayloadStore:
        if self.payloads is not None:
            return BucketPayloads(self.payloads)
        return PayloadFiles(self.payload_dir.parent, self.payload_dir.name)

    def _reset(self) -> None:
        """The per-process state, as before the first open."""
        self._open_lock = threading.Lock()
        self._writer: ConnectionThread | None = None
        self._reader: ConnectionThread | None = None
        self._readers: ReaderPool | None = None
        self._lock_file: _locks.LockFile | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def forget(self) -> None:
        # A forked child: the parent's connection threads do not exist here, and closing
        # its connections would act on the parent's database. Keep them, untouched.
        if self._finalizer is not None:
            self._finalizer.detach()
        kept = (self._writer, self._reader, self._readers, self._lock_file, self._payloads)
        _forks.remember(kept)
        self._payloads = self._new_payloads()  # the old one's lock or client is the parent's
        self._reset()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {str(self.path)!r}>"

    # -- connections and drivers ----------------------------------------------------------------

    def _error(self, error: sqlite3.Error | OSError) -> StorageError:
        """The one translation of SQLite's and the file system's errors."""
        return StorageError(f"SQLite store {str(self.path)!r}: {error}")

    def _connector(self, *, read_only: bool = False) -> Callable[[], sqlite3.Connection]:
        """A function making a connection (it holds no reference to the back-end, so that
        a store dropped unclosed can be garbage-collected and its finalizer run)."""
        return functools.partial(connect, self.path, self.busy_timeout, self.durable, read_only)

    def _connections(self) -> tuple[ConnectionThread, ConnectionThread, ReaderPool]:
        writer, reader, readers = self._writer, self._reader, self._readers
        if writer is None or reader is None or readers is None:
            raise StorageError(f"SQLite store {str(self.path)!r} is not open")
        return writer, reader, readers

    async def _drive(self, steps: Steps[T]) -> T:
        """Carry out `steps` awaiting (see `run_steps`)."""
        writer, reader, _ = self._connections()
        try:
            return await run_steps(steps, writer, reader)
        except (sqlite3.Error, OSError) as error:
            raise self._error(error) from error

    async def _query(self, sql: str, arguments: Sequence[Any]) -> list[Any]:
        """One read query, on the reader's thread."""
        result: list[Any] = await self._drive(one(Query(sql, arguments)))
        return result

    def _blocking_drive(self, steps: Steps[T]) -> T:
        """Carry out `steps` in the calling thread (see `run_steps_blocking`)."""
        writer, _, readers = self._connections()
        try:
            return run_steps_blocking(steps, writer, readers)
        except (sqlite3.Error, OSError) as error:
            raise self._error(error) from error

    # -- opening and closing --------------------------------------------------------------------

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self.blocking_open)

    def blocking_open(self) -> None:
        with self._open_lock:
            if self._writer is not None:
                return
            try:
                self._check_path()
            except OSError as error:
                raise self._error(error) from error
            try:
                writer = ConnectionThread(
                    self._connector(), f"adatastore-sqlite-writer {self.path}"
                )
            except sqlite3.Error as error:
                raise open_error(self.path, error) from error
            try:
                writer.run(functools.partial(prepare, self.path, self.create))
                reader = ConnectionThread(
                    self._connector(read_only=True), f"adatastore-sqlite-reader {self.path}"
                )
            except BaseException:
                writer.close()
                raise
            readers = ReaderPool(self._connector(read_only=True))
            self._writer, self._reader, self._readers = writer, reader, readers
            self._finalizer = weakref.finalize(
                self,
                release,
                f"SQLite store {str(self.path)!r}" if self.warn_unclosed else None,
                writer,
                reader,
                readers,
                self._lock_file,
            )
            self._finalizer.atexit = False  # daemon threads: nothing holds up the exit
        try:
            self._payloads.remove_dead_temps()
            self._collect_garbage()  # left by a process that crashed
        except OSError as error:
            raise self._error(error) from error

    def _check_path(self) -> None:
        self.path = self.path.absolute()  # here, in a thread: getcwd is a system call
        self.payload_dir = self.path.with_name(self.path.name + "-payloads")
        self.lock_dir = self.path.with_name(self.path.name + "-locks")
        if self.payloads is None:
            self._payloads = self._new_payloads()
        check_location(self.path, self.create)
        if _locks.LockFile.supported():
            if self._lock_file is None:  # opened at its first use
                self._lock_file = _locks.LockFile(self.path.with_name(self.path.name + "-lock"))
        else:
            with contextlib.suppress(OSError):
                self.lock_dir.mkdir(exist_ok=True)
        warn_if_on_a_network_filesystem(self.path)

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.blocking_close)

    def blocking_close(self) -> None:
        with self._open_lock:
            writer, reader, readers = self._writer, self._reader, self._readers
            lock_file, finalizer = self._lock_file, self._finalizer
            self._writer = self._reader = self._readers = None
            self._lock_file = self._finalizer = None
        if finalizer is not None:
            finalizer.detach()
        if writer is not None:
            with contextlib.suppress(sqlite3.Error, StorageError, OSError):
                self._collect_garbage(writer)
        release(None, writer, reader, readers, lock_file)
        self._payloads.close()
        for thread in (writer, reader):
            if thread is not None:
                thread.join()

    # -- payload files --------------------------------------------------------------------------

    def _collect_garbage(self, writer: ConnectionThread | None = None) -> None:
        """Remove the files of replaced and deleted records (queued by the triggers)."""
        writer = writer or self._connections()[0]
        try:
            writer.run(functools.partial(collect, self._payloads))
        except sqlite3.Error as error:
            raise self._error(error) from error

    # -- the operations, as steps ---------------------------------------------------------------

    def _containing(self, key: str, attribute_name: str) -> Steps[bool]:
        return bool((yield Query(CONTAINS, (key, attribute_name))))

    # -- the contract ---------------------------------------------------------------------------

    async def write(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        await self.write_many([(key, attribute_name, record, component)])

    def blocking_write(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        self.blocking_write_many([(key, attribute_name, record, component)])

    async def write_many(self, records: Sequence[RecordWrite]) -> None:
        """All records in one transaction, all or nothing; large ones to files first."""
        writer = self._connections()[0]
        unit, with_files = write_plan(records, self._payloads, self.durable, writer)
        try:
            if unit is not None:
                await writer.arun(unit)
            else:
                # A cancelled caller waits for the files (or the bucket's uploads) and the
                # unit that names them: when it returns, nothing is still being written.
                assert with_files is not None
                (await run_to_end(anyio.to_thread.run_sync, with_files)).unwrap()
        except (sqlite3.Error, OSError) as error:
            raise self._error(error) from error

    def blocking_write_many(self, records: Sequence[RecordWrite]) -> None:
        writer = self._connections()[0]
        unit, with_files = write_plan(records, self._payloads, self.durable, writer)
        try:
            if unit is not None:
                writer.run_here(unit, self.busy_timeout)  # rows only: short
            else:
                assert with_files is not None
                with_files()
        except (sqlite3.Error, OSError) as error:
            raise self._error(error) from error

    # A record in its row (the common case) is read with one query, no steps: the steps'
    # generator cost ~11,000 instructions a read (callgrind). Files and retries take them.

    async def read(
        self, key: str, attribute_name: str, mode: MapMode | None = None
    ) -> Buffer | None:
        reader = self._connections()[1]
        try:
            rows = await reader.arun(functools.partial(fetch, READ, (key, attribute_name)))
        except sqlite3.Error as error:
            raise self._error(error) from error
        if not rows or rows[0][1] is None:
            return in_row(rows)
        return await self._drive(reading(self._payloads, key, attribute_name, rows, mode))

    def blocking_read(
        self, key: str, attribute_name: str, mode: MapMode | None = None
    ) -> Buffer | None:
        readers = self._connections()[2]
        try:
            rows = readers.query(READ, (key, attribute_name))
        except sqlite3.Error as error:
            raise self._error(error) from error
        if not rows or rows[0][1] is None:
            return in_row(rows)
        return self._blocking_drive(reading(self._payloads, key, attribute_name, rows, mode))

    async def read_many(
        self, pairs: Sequence[tuple[str, str]], mode: MapMode | None = None
    ) -> list[Buffer | None]:
        return await self._drive(reading_many(self._payloads, pairs, mode))

    def blocking_read_many(
        self, pairs: Sequence[tuple[str, str]], mode: MapMode | None = None
    ) -> list[Buffer | None]:
        return self._blocking_drive(reading_many(self._payloads, pairs, mode))

    # files mapped (the records in rows are read as usual)
    read_mapped, blocking_read_mapped = read, blocking_read
    read_many_mapped, blocking_read_many_mapped = read_many, blocking_read_many

    async def contains(self, key: str, attribute_name: str) -> bool:
        return await self._drive(self._containing(key, attribute_name))

    def blocking_contains(self, key: str, attribute_name: str) -> bool:
        return self._blocking_drive(self._containing(key, attribute_name))

    async def delete(self, key: str, attribute_name: str | None) -> int:
        unit = functools.partial(delete_unit, key, attribute_name, self._payloads)
        count: int = await self._drive(one(Unit(unit)))
        return count

    async def delete_listed(self, entries: Sequence[Entry]) -> list[Entry]:
        unit = functools.partial(delete_listed_unit, entries, self._payloads)
        gone: list[Entry] = await self._drive(one(Unit(unit)))
        return gone

    async def touch_many(self, used: Sequence[Used]) -> None:
        await self._drive(one(Unit(functools.partial(touch_unit, used))))

    def blocking_touch_many(self, used: Sequence[Used]) -> None:
        self._blocking_drive(one(Unit(functools.partial(touch_unit, used))))

    async def last_used(self) -> dict[tuple[str, str], float]:
        rows = await self._drive(one(Unit(last_used_rows)))
        return read_notes(rows, str(self.path))

    async def read_head(self, key: str, attribute_name: str, size: int) -> Buffer | None:
        query = "SELECT substr(payload, 1, ?), file FROM entries WHERE key = ? AND attribute = ?"
        rows = await self._query(query, (size, key, attribute_name))
        if not rows:
            return None
        ((head, name),) = rows
        if name is None:
            return bytes(head)
        return await self._drive(one(Offload(self._payloads.read_head_or_none, (name, size))))

    async def contains_many(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        rows: list[Any] = []
        for sql, arguments in pair_queries("1", pairs):
            rows.extend(await self._query(sql, arguments))
        return {(str(key), str(name)) for key, name, _ in rows}

    async def components(self, full_type: str | None) -> list[ComponentRecord]:
        sql, arguments = COMPONENTS, [] if full_type is None else [full_type]
        if full_type is not None:
            sql += " WHERE full_type = ?"
        records, _ = parse_components(await self._query(sql, arguments))
        return records  # a damaged row is passed over: verify reports it

    async def planted(self) -> list[DamagedEntry]:
        return parse_components(await self._query(COMPONENTS, ()))[1]

    async def remove_planted(self, item: DamagedEntry) -> int:
        unit = functools.partial(remove_component_unit, item.key, self._payloads)
        removed: int = await self._drive(one(Unit(unit)))
        return removed

    async def entries(self) -> list[Entry]:
        rows = await self._query(
            "SELECT e.key, e.attribute, c.full_type, c.version, e.size, e.stored_at "
            "FROM entries e LEFT JOIN components c USING (key)",
            (),
        )
        return [
            Entry(
                key=key,
                attribute_name=attribute,
                full_type=full_type or "",
                version=version or "",
                size=size if type(size) is int else 0,
                # a planted time that is not one lists as 1970: evicted first
                stored_at=datetime.fromtimestamp(note_time(stored_at) or 0.0, UTC),
            )
            for key, attribute, full_type, version, size, stored_at in rows
        ]

    def lock(
        self, key: str, attribute_name: str, timeout: float | None
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        if self._lock_file is not None:
            return self._lock_file.hold(key, attribute_name, timeout)
        # SQLite's directory is local (it warns otherwise): lock attempts run inline.
        lock = _locks.FileLock(self.lock_dir / _locks.lock_name(key, attribute_name), inline=True)
        return lock.hold(timeout)

    def spec(self) -> BackendSpec:
        arguments: dict[str, Any] = {"path": str(self.path), "durable": self.durable}
        arguments |= {"busy_timeout": self.busy_timeout, "create": False}
        arguments["payloads"] = self.payloads
        return BackendSpec(SQLiteBackend, arguments, f"sqlite:///{self.path}")

    async def cleanup(self, older_than: float) -> int:
        await anyio.to_thread.run_sync(self._collect_garbage)
        query = Query("SELECT file FROM entries WHERE file IS NOT NULL", ())
        referenced = {str(item[0]) for item in await self._drive(one(query))}
        removed, _ = await self._drive(
            one(Offload(self._payloads.remove_unreferenced, (referenced, older_than)))
        )
        return removed  # type: ignore[no-any-return]


if TYPE_CHECKING:
    from .._stores.sqlite import AsyncSQLiteDataStore, SQLiteDataStore


def __getattr__(name: str) -> Any:
    """The named stores (AsyncSQLiteDataStore, SQLiteDataStore) live above the facade, in
    ``adatastore._stores``; their import path here is served when asked for (PEP 562)."""
    if name in ("AsyncSQLiteDataStore", "SQLiteDataStore"):
        from .._stores import sqlite

        return getattr(sqlite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
