"""The embedded default: one SQLite file.

Small records live in the database; records of `FILE_THRESHOLD` bytes or more go to
immutable files in a directory beside it (``<name>-payloads/``), because SQLite moves large
BLOBs at a fraction of the file system's speed (0.3-0.4 GB/s against 2-4 GB/s here).

Connections: a writer and a reader, each owned by a daemon thread (`adatastore._connection`)
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
import json
import os
import sqlite3
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread

from .. import _forks, _fsio, _locks, _record
from .._beneath import UnsafePath
from .._connection import ConnectionThread
from .._payloads import NotOurs, PayloadFiles
from ..errors import (
    ConfigurationError,
    CorruptEntryError,
    NetworkFilesystemWarning,
    StorageError,
)
from ..keygenerators import KeyGenerator
from ..serializers import Buffer, Serializer
from ..signing import SigningKey
from ..stats import logger
from ..store import AsyncDataStore, ComponentRecord, Entry, json_text

__all__ = ["FILE_THRESHOLD", "SCHEMA_VERSION", "AsyncSQLiteDataStore"]

SCHEMA_VERSION = 2
APPLICATION_ID = 0x41445331  # "ADS1"
FILE_THRESHOLD = 128 * 1024
"""Records at least this large are kept in files beside the database."""


_TABLES = """
CREATE TABLE IF NOT EXISTS components (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE,
    full_type   TEXT NOT NULL,
    version     TEXT NOT NULL,
    parameters  TEXT NOT NULL,   -- JSON, for people and tools; never part of the key
    input_keys  TEXT NOT NULL    -- JSON list
);
CREATE TABLE IF NOT EXISTS entries (
    id          INTEGER PRIMARY KEY,  -- rows in insertion order: payloads appended, not
    key         TEXT NOT NULL,        -- spread over a b-tree keyed by random hashes
    attribute   TEXT NOT NULL,
    payload     BLOB,            -- the record, or NULL when it is in `file`
    file        TEXT,            -- name of the record's file in the payload directory
    size        INTEGER NOT NULL,
    stored_at   REAL NOT NULL,   -- seconds since the epoch
    UNIQUE (key, attribute),
    CHECK ((payload IS NULL) <> (file IS NULL))
);
CREATE TABLE IF NOT EXISTS garbage (file TEXT NOT NULL);
"""

_VIEWS_AND_TRIGGERS = """
CREATE VIEW IF NOT EXISTS store_entry AS
    SELECT e.key, e.attribute, e.payload, e.file, e.size, e.stored_at,
           c.full_type, c.version, c.parameters, c.input_keys
    FROM entries e JOIN components c USING (key);
CREATE TRIGGER IF NOT EXISTS store_entry_insert INSTEAD OF INSERT ON store_entry
BEGIN
    INSERT OR IGNORE INTO components (key, full_type, version, parameters, input_keys)
        VALUES (NEW.key, NEW.full_type, NEW.version, NEW.parameters, NEW.input_keys);
    INSERT INTO garbage (file)
        SELECT file FROM entries
        WHERE key = NEW.key AND attribute = NEW.attribute AND file IS NOT NULL;
    INSERT INTO entries (key, attribute, payload, file, size, stored_at)
        VALUES (NEW.key, NEW.attribute, NEW.payload, NEW.file, NEW.size, NEW.stored_at)
        ON CONFLICT (key, attribute) DO UPDATE SET
            payload = excluded.payload, file = excluded.file,
            size = excluded.size, stored_at = excluded.stored_at;
END;
CREATE TRIGGER IF NOT EXISTS entries_delete AFTER DELETE ON entries
BEGIN
    INSERT INTO garbage (file) SELECT OLD.file WHERE OLD.file IS NOT NULL;
    DELETE FROM components
        WHERE key = OLD.key AND NOT EXISTS (SELECT 1 FROM entries WHERE key = OLD.key);
END;
"""

_FROM_VERSION_1 = (
    """
DROP VIEW IF EXISTS store_entry;
DROP TRIGGER IF EXISTS entries_delete;
ALTER TABLE components RENAME TO components_v1;
ALTER TABLE entries RENAME TO entries_v1;
"""
    + _TABLES
    + """
INSERT INTO components (key, full_type, version, parameters, input_keys)
    SELECT key, full_type, version, parameters, input_keys FROM components_v1;
INSERT INTO entries (key, attribute, payload, file, size, stored_at)
    SELECT key, attribute, payload, file, size, stored_at FROM entries_v1 ORDER BY stored_at;
DROP TABLE entries_v1;
DROP TABLE components_v1;
"""
)
"""Version 1 kept entries in WITHOUT ROWID tables keyed by the hashes: 1 KB rows then
cost 45 µs each to insert here (random b-tree splits), 16 µs in version 2."""


def _statements(script: str) -> list[str]:
    """The statements of one of the scripts above (no semicolons inside literals)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [statement for statement in statements if statement]


class AsyncSQLiteDataStore(AsyncDataStore):
    """All entries in one SQLite file (created with its parent directories if missing).

    Safe for several tasks, threads, event loops and processes on one machine (WAL
    journal, a busy timeout, one-unit writes); runs on asyncio and trio. Not for network
    file systems: SQLite's locks are unreliable there; use the Django back-end on
    PostgreSQL to share a cache between machines. `durable=True` makes every store survive
    a power cut (``synchronous=FULL`` and fsynced payload files); by default a store
    survives any crash of the process.

    Close it with `aclose` or ``async with``; a store dropped unclosed is closed when it is
    garbage-collected (with a `ResourceWarning`), and never holds up the interpreter's exit.
    """

    supports_blocking = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        *,
        durable: bool = False,
        busy_timeout: float = 60.0,
        signing_key: SigningKey | None = None,
        verify_on_read: bool = True,
        create: bool = True,
    ) -> None:
        """`create=False` opens only an existing store (tools that look, never make): a
        missing file is a `ConfigurationError`, and no file or directory is created."""
        super().__init__(
            key_generator, serializer, signing_key=signing_key, verify_on_read=verify_on_read
        )
        self.create = create
        self.path = Path(path)  # made absolute when the store opens
        self.payload_dir = self.path.with_name(self.path.name + "-payloads")
        self.lock_dir = self.path.with_name(self.path.name + "-locks")
        if not (isinstance(busy_timeout, int | float) and 0 <= busy_timeout <= 10**6):
            raise ConfigurationError(
                f"busy_timeout must be a number of seconds from 0 to 10**6, not {busy_timeout!r}"
            )
        self.durable = durable
        self.busy_timeout = float(busy_timeout)
        self._payloads = PayloadFiles(self.payload_dir.parent, self.payload_dir.name)
        self._reset()

    def _reset(self) -> None:
        """The per-process state, as before the first open."""
        self._open_lock = threading.Lock()
        self._writer: ConnectionThread | None = None
        self._reader: ConnectionThread | None = None
        self._readers: _ReaderPool | None = None
        self._lock_file: _locks.LockFile | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def forget_raw(self) -> None:
        # A forked child: the parent's connection threads do not exist here, and closing
        # its connections would act on the parent's database. Keep them, untouched.
        if self._finalizer is not None:
            self._finalizer.detach()
        _forks.remember((self._writer, self._reader, self._readers, self._lock_file))
        # a new one: the old one's lock may be held by a thread of the parent
        self._payloads = PayloadFiles(self.payload_dir.parent, self.payload_dir.name)
        self._reset()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} {str(self.path)!r}{state}>"

    # -- connections ----------------------------------------------------------------------------

    def _error(self, error: sqlite3.Error | OSError) -> StorageError:
        return StorageError(f"SQLite store {str(self.path)!r}: {error}")

    def _connector(self, *, read_only: bool = False) -> Callable[[], sqlite3.Connection]:
        """A function making a connection (it holds no reference to the store, so that a
        store dropped unclosed can be garbage-collected and its finalizer run)."""
        return functools.partial(_connect, self.path, self.busy_timeout, self.durable, read_only)

    def _connections(self) -> tuple[ConnectionThread, ConnectionThread, _ReaderPool]:
        writer, reader, readers = self._writer, self._reader, self._readers
        if writer is None or reader is None or readers is None:
            raise StorageError(f"SQLite store {str(self.path)!r} is not open")
        return writer, reader, readers

    async def _aread(self, sql: str, arguments: Sequence[Any] = ()) -> list[Any]:
        """One query on the reader's thread, awaited."""
        _, reader, _ = self._connections()
        try:
            return await reader.arun(functools.partial(_fetch, sql, arguments))
        except sqlite3.Error as error:
            raise self._error(error) from error

    def _read(self, sql: str, arguments: Sequence[Any] = ()) -> list[Any]:
        """One query in the calling thread (a pooled read-only connection)."""
        _, _, readers = self._connections()
        try:
            return readers.query(sql, arguments)
        except sqlite3.Error as error:
            raise self._error(error) from error

    def _write(self, unit: Callable[[sqlite3.Connection], Any]) -> Any:
        """One unit on the writer's thread, waited for in the calling thread."""
        writer, _, _ = self._connections()
        try:
            return writer.run(unit)
        except sqlite3.Error as error:
            raise self._error(error) from error

    async def _awrite(self, unit: Callable[[sqlite3.Connection], Any]) -> Any:
        """One unit on the writer's thread, awaited."""
        writer, _, _ = self._connections()
        try:
            return await writer.arun(unit)
        except sqlite3.Error as error:
            raise self._error(error) from error

    # -- opening and closing --------------------------------------------------------------------

    async def open_raw(self) -> None:
        await anyio.to_thread.run_sync(self.open_raw_blocking)

    def open_raw_blocking(self) -> None:
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
                hint = ""
                if not os.access(self.path.parent, os.W_OK):
                    hint = (
                        "; its directory is not writable (read-only file system or "
                        "permissions), and SQLite writes its journal beside the database"
                    )
                raise ConfigurationError(
                    f"cannot open SQLite store {str(self.path)!r}: {error}{hint}"
                ) from error
            try:
                writer.run(self._prepare)
                reader = ConnectionThread(
                    self._connector(read_only=True), f"adatastore-sqlite-reader {self.path}"
                )
            except BaseException:
                writer.close()
                raise
            readers = _ReaderPool(self._connector(read_only=True))
            self._writer, self._reader, self._readers = writer, reader, readers
            self._finalizer = weakref.finalize(
                self,
                _release,
                repr(self) if self.warn_unclosed else None,
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
        self._payloads = PayloadFiles(self.payload_dir.parent, self.payload_dir.name)
        if self.path.is_dir():
            raise ConfigurationError(
                f"SQLite store path {str(self.path)!r} is a directory (a plain path names an "
                f"SQLite file); for a store of files there use the URL file://{self.path}"
            )
        if not self.create and not self.path.is_file():
            raise ConfigurationError(f"no store at {str(self.path)!r}: no such file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ConfigurationError(
                f"cannot create {str(self.path.parent)!r}: a parent is not a directory"
            ) from None
        if _locks.LockFile.supported():
            if self._lock_file is None:  # opened at its first use
                self._lock_file = _locks.LockFile(self.path.with_name(self.path.name + "-lock"))
        else:
            with contextlib.suppress(OSError):
                self.lock_dir.mkdir(exist_ok=True)
        kind = _fsio.filesystem_type(str(self.path.parent), _fsio.MOUNTS_FILE)
        if kind in _fsio.NETWORK_FILESYSTEMS:
            message = (
                f"SQLite store {str(self.path)!r} is on a network file system ({kind}): "
                "SQLite's locking is unreliable there and concurrent writers can corrupt "
                "the database; share a cache between machines with the Django back-end on "
                "PostgreSQL (django+postgresql://...)"
            )
            logger.warning(message)
            warnings.warn(NetworkFilesystemWarning(message), stacklevel=2)

    def _prepare(self, connection: sqlite3.Connection) -> None:
        """Set WAL mode and create or check the schema (in the writer's thread)."""
        try:
            ((application_id,),) = connection.execute("PRAGMA application_id").fetchall()
            ((version,),) = connection.execute("PRAGMA user_version").fetchall()
            ((tables,),) = connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
            if application_id not in (0, APPLICATION_ID) or (
                application_id == 0 and tables and version == 0
            ):
                raise ConfigurationError(
                    f"{str(self.path)!r} is an SQLite database of something else, "
                    "not an adatastore store"
                )
            if not self.create and not tables:
                raise ConfigurationError(f"no store at {str(self.path)!r}: an empty database")
            if version > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{str(self.path)!r} has schema version {version}; this adatastore "
                    f"reads version {SCHEMA_VERSION}: upgrade adatastore"
                )
            connection.execute("PRAGMA journal_mode = WAL").fetchall()
            if version < SCHEMA_VERSION:
                self._create_or_upgrade(connection)
        except sqlite3.DatabaseError as error:
            if connection.in_transaction:
                connection.rollback()
            raise ConfigurationError(
                f"cannot use {str(self.path)!r} as an SQLite store: {error}"
            ) from error

    def _create_or_upgrade(self, connection: sqlite3.Connection) -> None:
        """Create the schema, or upgrade an older one, in one transaction.

        The version is read again inside the transaction: of several processes opening
        the same old store at once, one upgrades and the others find it done.
        """
        connection.execute("BEGIN IMMEDIATE")
        try:
            ((version,),) = connection.execute("PRAGMA user_version").fetchall()
            if version < SCHEMA_VERSION:
                script = _FROM_VERSION_1 if version == 1 else _TABLES
                for statement in _statements(script + _VIEWS_AND_TRIGGERS):
                    connection.execute(statement)
                connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                if version == 1:
                    logger.info("upgraded SQLite store %s to schema version 2", self.path)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.rollback()
            raise

    async def close_raw(self) -> None:
        await anyio.to_thread.run_sync(self.close_raw_blocking)

    def close_raw_blocking(self) -> None:
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
        _release(None, writer, reader, readers, lock_file)
        self._payloads.close()
        for thread in (writer, reader):
            if thread is not None:
                thread.join()

    # -- payload files --------------------------------------------------------------------------

    def _payload(self, key: str, attribute_name: str, name: str) -> Buffer | None:
        """A record's payload file; None when it is gone (replaced meanwhile: retry)."""
        try:
            return self._payloads.read(name)
        except NotOurs:
            raise CorruptEntryError(
                key,
                attribute_name,
                f"its row names the payload file {name!r}, which is not a name adatastore "
                "makes (planted, or damage): never opened",
            ) from None
        except UnsafePath as error:
            raise CorruptEntryError(
                key, attribute_name, f"its payload file {error.relative!r} is {error.what}"
            ) from None
        except OSError as error:
            raise self._error(error) from error

    def _collect_garbage(self, writer: ConnectionThread | None = None) -> None:
        """Remove the files of replaced and deleted records (queued by the triggers)."""
        writer = writer or self._connections()[0]
        try:
            writer.run(functools.partial(_collect, self._payloads))
        except sqlite3.Error as error:
            raise self._error(error) from error

    # -- writing --------------------------------------------------------------------------------

    def _write_rows(self, rows: list[dict[str, Any]], records: Sequence[Sequence[Buffer]]) -> None:
        """Write rows (large records to their files first) in one unit; blocking.

        The body of every write with files, run in the caller's thread by the blocking
        API and in a worker thread by the async one: either way it runs to its end.
        """
        moves: list[tuple[str, str]] = []
        try:
            for row, record in zip(rows, records, strict=True):
                if row["size"] >= FILE_THRESHOLD:
                    name, temp = self._payloads.write_temp(record, durable=self.durable)
                    row["file"] = name
                    moves.append((temp, name))
        except BaseException as error:
            for temp, _ in moves:
                self._payloads.remove_temp(temp)
            if isinstance(error, OSError):
                raise self._error(error) from error
            raise
        # From here on the unit owns the temporary files: it renames or removes them.
        self._write(self._unit(rows, moves))

    def _unit(
        self, rows: list[dict[str, Any]], moves: list[tuple[str, str]]
    ) -> Callable[[sqlite3.Connection], None]:
        return functools.partial(
            _write_unit, _insert_statements(rows), moves, self.durable, self._payloads
        )

    def write_raw_blocking(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        row = _row(key, attribute_name, record, component)
        if row["size"] < FILE_THRESHOLD:
            self._write(self._unit([row], []))
        else:
            self._write_rows([row], [record])

    async def write_raw(
        self,
        key: str,
        attribute_name: str,
        record: Sequence[Buffer],
        component: ComponentRecord,
    ) -> None:
        row = _row(key, attribute_name, record, component)
        if row["size"] < FILE_THRESHOLD:
            await self._awrite(self._unit([row], []))
        else:
            await anyio.to_thread.run_sync(self._write_rows, [row], [record])

    async def write_many_raw(
        self, records: Sequence[tuple[str, str, Sequence[Buffer], ComponentRecord]]
    ) -> None:
        """All records in one transaction, all or nothing; large ones to files first."""
        rows = [_row(key, name, record, component) for key, name, record, component in records]
        if any(row["size"] >= FILE_THRESHOLD for row in rows):
            await anyio.to_thread.run_sync(
                self._write_rows, rows, [record for _, _, record, _ in records]
            )
        else:
            await self._awrite(self._unit(rows, []))

    async def delete_raw(self, key: str, attribute_name: str | None) -> int:
        unit = functools.partial(_delete_unit, key, attribute_name, self._payloads)
        count: int = await self._awrite(unit)
        return count

    # -- reading --------------------------------------------------------------------------------

    def _missing_payload(self, key: str, attribute_name: str) -> CorruptEntryError:
        return CorruptEntryError(
            key,
            attribute_name,
            f"its payload file is missing from {str(self._payloads.path)!r} (deleted by hand?)",
        )

    async def read_raw(self, key: str, attribute_name: str) -> Buffer | None:
        for _attempt in range(5):
            rows = await self._aread(_READ, (key, attribute_name))
            if not rows:
                return None
            ((payload, name),) = rows
            if name is None:
                return bytearray(payload)
            data = await anyio.to_thread.run_sync(self._payload, key, attribute_name, name)
            if data is not None:
                return data
            # The record was replaced and its old file removed after we read the row.
        raise self._missing_payload(key, attribute_name)

    def read_raw_blocking(self, key: str, attribute_name: str) -> Buffer | None:
        for _attempt in range(5):
            rows = self._read(_READ, (key, attribute_name))
            if not rows:
                return None
            ((payload, name),) = rows
            if name is None:
                return bytearray(payload)
            data = self._payload(key, attribute_name, name)
            if data is not None:
                return data
        raise self._missing_payload(key, attribute_name)

    async def read_head_raw(self, key: str, attribute_name: str, size: int) -> Buffer | None:
        query = "SELECT substr(payload, 1, ?), file FROM entries WHERE key = ? AND attribute = ?"
        rows = await self._aread(query, (size, key, attribute_name))
        if not rows:
            return None
        ((head, name),) = rows
        if name is None:
            return bytes(head)

        def read_head() -> bytes | None:
            try:
                return self._payloads.read_head(name, size)
            except (NotOurs, UnsafePath):
                return None  # the whole read reports it
            except OSError as error:
                raise self._error(error) from error

        return await anyio.to_thread.run_sync(read_head)

    async def contains_raw(self, key: str, attribute_name: str) -> bool:
        return bool(await self._aread(_CONTAINS, (key, attribute_name)))

    def contains_raw_blocking(self, key: str, attribute_name: str) -> bool:
        return bool(self._read(_CONTAINS, (key, attribute_name)))

    def _assemble(
        self, pairs: Sequence[tuple[str, str]], rows: list[Any], read_alone: Callable[..., Any]
    ) -> list[Any]:
        """The records of `pairs` from the rows of a pair query (files read here)."""
        found = {(str(key), str(name)): (payload, file) for key, name, payload, file in rows}
        results: list[Any] = []
        for pair in pairs:
            if pair not in found:
                results.append(None)
                continue
            payload, file = found[pair]
            if file is None:
                results.append(bytearray(payload))
            else:
                data = self._payload(*pair, file)
                # replaced meanwhile: read it alone (that retries)
                results.append(data if data is not None else read_alone(*pair))
        return results

    async def read_many_raw(self, pairs: Sequence[tuple[str, str]]) -> list[Buffer | None]:
        """One query per 400 entries; payload files read in one worker-thread hop."""
        rows: list[Any] = []
        for sql, arguments in _pair_queries("payload, file", pairs):
            rows.extend(await self._aread(sql, arguments))
        if not any(row[3] is not None for row in rows):
            return self._assemble(pairs, rows, self.read_raw_blocking)
        return await anyio.to_thread.run_sync(self._assemble, pairs, rows, self.read_raw_blocking)

    def read_many_raw_blocking(self, pairs: Sequence[tuple[str, str]]) -> list[Buffer | None]:
        rows: list[Any] = []
        for sql, arguments in _pair_queries("payload, file", pairs):
            rows.extend(self._read(sql, arguments))
        return self._assemble(pairs, rows, self.read_raw_blocking)

    async def contains_many_raw(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        rows: list[Any] = []
        for sql, arguments in _pair_queries("1", pairs):
            rows.extend(await self._aread(sql, arguments))
        return {(str(key), str(name)) for key, name, _ in rows}

    async def components_raw(self, full_type: str | None) -> list[ComponentRecord]:
        sql = "SELECT key, full_type, version, parameters, input_keys FROM components"
        arguments: tuple[str, ...] = ()
        if full_type is not None:
            sql, arguments = sql + " WHERE full_type = ?", (full_type,)
        return [
            ComponentRecord(
                key=str(key),
                full_type=str(kind),
                version=str(version),
                parameters=json.loads(parameters),
                input_keys=tuple(json.loads(input_keys)),
            )
            for key, kind, version, parameters, input_keys in await self._aread(sql, arguments)
        ]

    async def list_raw(self) -> list[Entry]:
        rows = await self._aread(
            "SELECT e.key, e.attribute, c.full_type, c.version, e.size, e.stored_at "
            "FROM entries e LEFT JOIN components c USING (key)"
        )
        return [
            Entry(
                key=key,
                attribute_name=attribute,
                full_type=full_type or "",
                version=version or "",
                size=size,
                stored_at=datetime.fromtimestamp(stored_at, UTC),
            )
            for key, attribute, full_type, version, size, stored_at in rows
        ]

    # -- locks and clean-up ---------------------------------------------------------------------

    def lock_raw(
        self, key: str, attribute_name: str, timeout: float | None
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        if self._lock_file is not None:
            return self._lock_file.hold(key, attribute_name, timeout)
        # SQLite's directory is local (it warns otherwise): lock attempts run inline.
        lock = _locks.FileLock(self.lock_dir / _locks.lock_name(key, attribute_name), inline=True)
        return lock.hold(timeout)

    async def cleanup_raw(self, older_than: float) -> int:
        await anyio.to_thread.run_sync(self._collect_garbage)
        rows = await self._aread("SELECT file FROM entries WHERE file IS NOT NULL")
        referenced = {str(row[0]) for row in rows}
        removed, _ = await anyio.to_thread.run_sync(
            self._payloads.remove_unreferenced, referenced, older_than
        )
        return removed


def _connect(path: Path, busy_timeout: float, durable: bool, read_only: bool) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, isolation_level=None, timeout=busy_timeout, check_same_thread=False
    )
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if read_only:
            connection.execute("PRAGMA query_only = 1")
        else:
            connection.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
    except BaseException:
        connection.close()
        raise
    return connection


class _ReaderPool:
    """Read-only connections for reads in the calling threads: one per concurrent reader.

    WAL lets them read beside the writer. (Running the async reads this way, in anyio
    worker threads, was slower: 330-420 µs per 1 KB retrieve against 215 through a
    connection thread, the worker hand-off costing more.)
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._idle: list[sqlite3.Connection] = []

    def query(self, sql: str, arguments: Sequence[Any]) -> list[Any]:
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            with _forks.gate:
                connection = self._connect()
            with self._lock:
                self._all.append(connection)
        try:
            with _forks.gate:
                return connection.execute(sql, arguments).fetchall()
        finally:
            with self._lock:
                if connection in self._all:  # not closed meanwhile
                    self._idle.append(connection)

    def close(self) -> None:
        with self._lock:
            connections, self._all, self._idle = self._all, [], []
        for connection in connections:
            with _forks.gate, contextlib.suppress(sqlite3.Error):
                connection.close()


def _release(
    unclosed: str | None,
    writer: ConnectionThread | None,
    reader: ConnectionThread | None,
    readers: _ReaderPool | None,
    lock_file: _locks.LockFile | None,
) -> None:
    """Close what a store holds (also when it is garbage-collected unclosed)."""
    if unclosed is not None:
        warnings.warn(
            f"{unclosed} was never closed; close stores with 'async with' or aclose()",
            ResourceWarning,
            stacklevel=1,
        )
    if readers is not None:
        readers.close()
    if lock_file is not None:
        lock_file.close()
    for thread in (writer, reader):
        if thread is not None:
            thread.close()


# -- units run in the writer's thread ----------------------------------------------------------


def _fetch(sql: str, arguments: Sequence[Any], connection: sqlite3.Connection) -> list[Any]:
    return connection.execute(sql, arguments).fetchall()


def _write_unit(
    statements: list[tuple[str, list[Any]]],
    moves: list[tuple[str, str]],
    durable: bool,
    payloads: PayloadFiles,
    connection: sqlite3.Connection,
) -> None:
    """Insert rows and move their files into place, in one transaction; on any failure
    roll back and remove the files (they are this unit's, whoever waits for it). Then
    remove the files of the records it replaced."""
    if len(statements) == 1 and not moves:
        connection.execute(*statements[0])  # one statement: its own transaction
    else:
        moved: list[str] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            for sql, arguments in statements:
                connection.execute(sql, arguments)
            for temp, name in moves:
                payloads.move_in(temp, name, durable=durable)
                moved.append(name)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            for temp, _ in moves:
                payloads.remove_temp(temp)
            for name in moved:
                payloads.remove(name)
            raise
    _collect(payloads, connection)


def _delete_unit(
    key: str, attribute_name: str | None, payloads: PayloadFiles, connection: sqlite3.Connection
) -> int:
    if attribute_name is None:
        rows = connection.execute("DELETE FROM entries WHERE key = ? RETURNING 1", (key,))
    else:
        rows = connection.execute(
            "DELETE FROM entries WHERE key = ? AND attribute = ? RETURNING 1",
            (key, attribute_name),
        )
    count = len(rows.fetchall())
    _collect(payloads, connection)
    return count


def _collect(payloads: PayloadFiles, connection: sqlite3.Connection) -> None:
    """Remove the files the triggers queued (of replaced and deleted records).

    Run by the unit that queued them, so even a caller cancelled meanwhile leaves no
    file behind; files go first, then their queue rows (a crash between the two leaves
    rows whose files are gone, which the next collection passes over). A queued name
    that adatastore does not make (a planted row) is dropped, its "file" never touched.
    """
    names = [row[0] for row in connection.execute("SELECT file FROM garbage")]
    if not names:
        return
    for name in names:
        payloads.remove(str(name))
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.executemany("DELETE FROM garbage WHERE file = ?", [(name,) for name in names])
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


_READ = "SELECT payload, file FROM entries WHERE key = ? AND attribute = ?"
_CONTAINS = "SELECT 1 FROM entries WHERE key = ? AND attribute = ?"


_COLUMNS = (
    "key",
    "attribute",
    "payload",
    "file",
    "size",
    "stored_at",
    "full_type",
    "version",
    "parameters",
    "input_keys",
)
_ROWS_PER_INSERT = 999 // len(_COLUMNS)  # SQLite's historical limit of bound parameters


def _insert_rows(rows: Sequence[dict[str, Any]]) -> tuple[str, list[Any]]:
    """One INSERT statement (so one implicit transaction) for several rows of `_row`."""
    placeholders = "(" + ", ".join("?" * len(_COLUMNS)) + ")"
    sql = f"INSERT INTO store_entry ({', '.join(_COLUMNS)}) VALUES " + ", ".join(
        [placeholders] * len(rows)
    )
    return sql, [row[column] for row in rows for column in _COLUMNS]


def _pair_queries(
    columns: str, pairs: Sequence[tuple[str, str]]
) -> Iterator[tuple[str, list[str]]]:
    """``SELECT key, attribute, <columns>`` of the entries among `pairs`, 400 pairs a query
    (SQLite's historical limit is 999 bound parameters)."""
    for start in range(0, len(pairs), 400):
        chunk = pairs[start : start + 400]
        condition = " OR ".join(["(key = ? AND attribute = ?)"] * len(chunk))
        arguments = [value for pair in chunk for value in pair]
        yield f"SELECT key, attribute, {columns} FROM entries WHERE {condition}", arguments


def _row(
    key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
) -> dict[str, Any]:
    """The columns of one record's row (payload in the row; a file replaces it)."""
    size = sum(memoryview(buffer).nbytes for buffer in record)
    return {
        "key": key,
        "attribute": attribute_name,
        "payload": b"".join(record) if size < FILE_THRESHOLD else None,
        "file": None,
        "size": size,
        "stored_at": _record.stored_at(record) or datetime.now(UTC).timestamp(),
        "full_type": component.full_type,
        "version": component.version,
        "parameters": json_text(component.parameters),
        "input_keys": json.dumps(list(component.input_keys)),
    }


def _insert_statements(rows: Sequence[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    return [
        _insert_rows(rows[start : start + _ROWS_PER_INSERT])
        for start in range(0, len(rows), _ROWS_PER_INSERT)
    ]
