"""The embedded default: one SQLite file, through aiosqlite.

Small records live in the database; records of `FILE_THRESHOLD` bytes or more go to
immutable files in a directory beside it (``<name>-payloads/``), because SQLite moves large
BLOBs at a fraction of the file system's speed (0.3-0.4 GB/s against 2-4 GB/s here).

Every write is a single SQL statement (an insert into a view whose trigger fills the
tables), so it is atomic on its own: no transaction is ever left open, by a crash or by
a cancelled task, and a write takes SQLite's write lock at its start, which with WAL and
a busy timeout lets several processes write one file without "database is locked"
errors. Files of replaced or deleted records are queued in the database by the same
trigger and removed after the next large write, delete, open or close.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import sqlite3
import threading
import warnings
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from .. import _fsio, _locks
from .._shutdown import at_shutdown
from ..errors import ConfigurationError, NetworkFilesystemWarning, StorageError
from ..keygenerators import KeyGenerator
from ..serializers import Buffer, Serializer
from ..signing import SigningKey
from ..stats import logger
from ..store import AsyncDataStore, ComponentRecord, Entry

try:
    import aiosqlite
except ImportError:  # pragma: no cover - a core dependency
    aiosqlite = None  # type: ignore[assignment]

__all__ = ["FILE_THRESHOLD", "SCHEMA_VERSION", "AsyncSQLiteDataStore"]

SCHEMA_VERSION = 2
APPLICATION_ID = 0x41445331  # "ADS1"
FILE_THRESHOLD = 128 * 1024
"""Records at least this large are kept in files beside the database."""

T = TypeVar("T")

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

    Safe for several tasks and several processes on one machine (WAL journal, a busy
    timeout, single-statement writes). Not for network file systems: SQLite's locks are
    unreliable there; use the Django back-end on PostgreSQL to share a cache between
    machines. `durable=True` makes every store survive a power cut (``synchronous=FULL``
    and fsynced payload files); by default a store survives any crash of the process.

    The store belongs to the event loop that opens it (aiosqlite runs on asyncio only).
    Close it with `aclose` or ``async with``: an open connection keeps a thread alive.
    """

    requires_asyncio = True

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
    ) -> None:
        super().__init__(
            key_generator, serializer, signing_key=signing_key, verify_on_read=verify_on_read
        )
        self.path = Path(path)  # made absolute when the store opens
        self.payload_dir = self.path.with_name(self.path.name + "-payloads")
        self.lock_dir = self.path.with_name(self.path.name + "-locks")
        self._lock_file: _locks.LockFile | None = None
        self._write_lock: anyio.Lock | None = None
        # Read-only connections for the blocking API's reads: a pool, one per concurrent
        # reader, closed with the store.
        self._blocking_readers: list[sqlite3.Connection] = []
        self._idle_readers: list[sqlite3.Connection] = []
        self._blocking_readers_lock = threading.Lock()
        self._pool_pid = os.getpid()
        self.durable = durable
        self.busy_timeout = busy_timeout
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._open_lock: anyio.Lock | None = None

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} {str(self.path)!r}{state}>"

    # -- connections ----------------------------------------------------------------------------

    async def _sql(self, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            return await operation()
        except sqlite3.Error as error:
            raise StorageError(f"SQLite store {str(self.path)!r}: {error}") from error

    async def _connect(self) -> aiosqlite.Connection:
        connection = await aiosqlite.connect(
            self.path, isolation_level=None, timeout=self.busy_timeout
        )
        try:
            await connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            await connection.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await connection.close()
            raise
        return connection

    async def open_raw(self) -> None:
        if self._open_lock is None:
            self._open_lock = anyio.Lock()  # made on the loop that uses them
            self._write_lock = anyio.Lock()
        async with self._open_lock:
            if self._writer is not None:
                return
            try:
                await anyio.to_thread.run_sync(self._check_path)
            except OSError as error:
                raise StorageError(f"SQLite store {str(self.path)!r}: {error}") from error
            try:
                writer = await self._connect()
            except sqlite3.Error as error:
                hint = ""
                if not await anyio.to_thread.run_sync(os.access, self.path.parent, os.W_OK):
                    hint = (
                        "; its directory is not writable (read-only file system or "
                        "permissions), and SQLite writes its journal beside the database"
                    )
                raise ConfigurationError(
                    f"cannot open SQLite store {str(self.path)!r}: {error}{hint}"
                ) from error
            try:
                await self._prepare(writer)
                await self._collect_garbage(writer)  # left by a process that crashed
                reader = await self._connect()
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await writer.close()
                raise
            self._writer, self._reader = writer, reader
            _unclosed.add(self)

    def _check_path(self) -> None:
        self.path = self.path.absolute()  # here, in a thread: getcwd is a system call
        self.payload_dir = self.path.with_name(self.path.name + "-payloads")
        self.lock_dir = self.path.with_name(self.path.name + "-locks")
        if self.path.is_dir():
            raise ConfigurationError(f"SQLite store path {str(self.path)!r} is a directory")
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

    async def _prepare(self, connection: aiosqlite.Connection) -> None:
        """Set WAL mode and create or check the schema."""
        try:
            ((application_id,),) = await connection.execute_fetchall("PRAGMA application_id")
            ((version,),) = await connection.execute_fetchall("PRAGMA user_version")
            ((tables,),) = await connection.execute_fetchall("SELECT count(*) FROM sqlite_master")
            if application_id not in (0, APPLICATION_ID) or (
                application_id == 0 and tables and version == 0
            ):
                raise ConfigurationError(
                    f"{str(self.path)!r} is an SQLite database of something else, "
                    "not an adatastore store"
                )
            if version > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{str(self.path)!r} has schema version {version}; this adatastore "
                    f"reads version {SCHEMA_VERSION}: upgrade adatastore"
                )
            await connection.execute_fetchall("PRAGMA journal_mode = WAL")
            if version < SCHEMA_VERSION:
                await self._create_or_upgrade(connection)
        except sqlite3.DatabaseError as error:
            with anyio.CancelScope(shield=True):
                if connection.in_transaction:
                    await connection.rollback()
            raise ConfigurationError(
                f"cannot use {str(self.path)!r} as an SQLite store: {error}"
            ) from error

    async def _create_or_upgrade(self, connection: aiosqlite.Connection) -> None:
        """Create the schema, or upgrade an older one, in one transaction.

        The version is read again inside the transaction: of several processes opening
        the same old store at once, one upgrades and the others find it done.
        """
        await connection.execute("BEGIN IMMEDIATE")
        try:
            ((version,),) = await connection.execute_fetchall("PRAGMA user_version")
            if version < SCHEMA_VERSION:
                script = _FROM_VERSION_1 if version == 1 else _TABLES
                for statement in _statements(script + _VIEWS_AND_TRIGGERS):
                    await connection.execute(statement)
                await connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                await connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                if version == 1:
                    logger.info("upgraded SQLite store %s to schema version 2", self.path)
            await connection.execute("COMMIT")
        except BaseException:
            with anyio.CancelScope(shield=True):
                if connection.in_transaction:
                    await connection.rollback()
            raise

    async def close_raw(self) -> None:
        _unclosed.discard(self)
        self._close_blocking_readers()
        if self._lock_file is not None:
            await anyio.to_thread.run_sync(self._lock_file.close)
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        with anyio.CancelScope(shield=True):
            if writer is not None:
                with contextlib.suppress(sqlite3.Error, StorageError, OSError):
                    await self._collect_garbage(writer)
                await writer.close()
            if reader is not None:
                await reader.close()

    # -- reads in threads ---------------------------------------------------------------------
    #
    # The blocking class reads in the calling thread through plain sqlite3 connections
    # from a pool (WAL lets them read beside the writer); writes go through the store's
    # loop, whose connection is the only writer of this process. (Running the async reads
    # the same way, in an anyio worker thread, was slower: 330-420 µs per 1 KB retrieve
    # against 215 through aiosqlite, the thread hand-off costing more than aiosqlite's.)

    supports_blocking_reads = True

    @contextlib.contextmanager
    def _blocking_reader(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection from the pool (made when none is free), for one read."""
        with self._blocking_readers_lock:
            if self._pool_pid != os.getpid():
                # A forked child must not use its parent's connections: it forgets them
                # (kept referenced, so no finalizer touches them) and makes its own.
                _inherited.extend(self._blocking_readers)
                self._blocking_readers, self._idle_readers = [], []
                self._pool_pid = os.getpid()
            connection = self._idle_readers.pop() if self._idle_readers else None
        if connection is None:
            try:
                connection = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False
                )
                connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                connection.execute("PRAGMA query_only = 1")
            except sqlite3.Error as error:
                raise StorageError(f"SQLite store {str(self.path)!r}: {error}") from error
            with self._blocking_readers_lock:
                self._blocking_readers.append(connection)
        try:
            yield connection
        finally:
            with self._blocking_readers_lock:
                if connection in self._blocking_readers:  # not closed meanwhile
                    self._idle_readers.append(connection)

    def _close_blocking_readers(self) -> None:
        with self._blocking_readers_lock:
            readers, self._blocking_readers, self._idle_readers = self._blocking_readers, [], []
            mine = self._pool_pid == os.getpid()
        for connection in readers if mine else ():
            with contextlib.suppress(sqlite3.Error):
                connection.close()

    def _query_blocking(self, sql: str, arguments: Sequence[Any]) -> list[Any]:
        try:
            with self._blocking_reader() as connection:
                return connection.execute(sql, arguments).fetchall()
        except sqlite3.Error as error:
            raise StorageError(f"SQLite store {str(self.path)!r}: {error}") from error

    def read_raw_blocking(self, key: str, attribute_name: str) -> Buffer | None:
        query = "SELECT payload, file FROM entries WHERE key = ? AND attribute = ?"
        for _attempt in range(5):
            rows = self._query_blocking(query, (key, attribute_name))
            if not rows:
                return None
            ((payload, name),) = rows
            if name is None:
                return bytearray(payload)
            data = self._read_payload_file(name)
            if data is not None:
                return data
            # The record was replaced and its old file removed after we read the row.
        raise self._missing_payload(key, attribute_name)

    def _missing_payload(self, key: str, attribute_name: str) -> StorageError:
        return StorageError(
            f"SQLite store {str(self.path)!r}: the payload file of {attribute_name!r} "
            f"of {key!r} is missing"
        )

    def _read_payload_file(self, name: str) -> Buffer | None:
        try:
            return _fsio.read_file(self._file_path(name))
        except OSError as error:
            raise StorageError(f"SQLite store {str(self.path)!r}: {error}") from error

    def contains_raw_blocking(self, key: str, attribute_name: str) -> bool:
        query = "SELECT 1 FROM entries WHERE key = ? AND attribute = ?"
        return bool(self._query_blocking(query, (key, attribute_name)))

    def read_many_raw_blocking(self, pairs: Sequence[tuple[str, str]]) -> list[Buffer | None]:
        rows: list[Any] = []
        for sql, arguments in _pair_queries("payload, file", pairs):
            rows.extend(self._query_blocking(sql, arguments))
        found = {(str(key), str(name)): (payload, file) for key, name, payload, file in rows}
        results: list[Buffer | None] = []
        for pair in pairs:
            if pair not in found:
                results.append(None)
                continue
            payload, file = found[pair]
            if file is None:
                results.append(bytearray(payload))
            else:
                data = self._read_payload_file(file)
                results.append(data if data is not None else self.read_raw_blocking(*pair))
        return results

    def _connections(self) -> tuple[aiosqlite.Connection, aiosqlite.Connection]:
        if self._writer is None or self._reader is None:
            raise StorageError(f"SQLite store {str(self.path)!r} is not open")
        return self._writer, self._reader

    # -- payload files --------------------------------------------------------------------------

    def _file_path(self, name: str) -> str:
        return os.path.join(self.payload_dir, _relative_file(name))

    def _write_file(self, record: Sequence[Buffer]) -> str:
        name = secrets.token_hex(16) + ".rec"
        path = self._file_path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _fsio.atomic_write(path, record, durable=self.durable)
        return name

    async def _execute(
        self, writer: aiosqlite.Connection, sql: str, parameters: Any = ()
    ) -> list[Any]:
        """One statement on the writer connection, never inside another task's transaction
        (tasks sharing a connection share its transaction)."""
        assert self._write_lock is not None
        async with self._write_lock:
            return list(await self._sql(lambda: writer.execute_fetchall(sql, parameters)))

    async def _collect_garbage(self, writer: aiosqlite.Connection) -> None:
        rows = await self._execute(writer, "DELETE FROM garbage RETURNING file")
        if rows:
            await anyio.to_thread.run_sync(self._unlink, [str(row[0]) for row in rows])

    def _unlink(self, names: list[str]) -> None:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._file_path(name))

    # -- the raw interface ----------------------------------------------------------------------

    async def write_raw(
        self,
        key: str,
        attribute_name: str,
        record: Sequence[Buffer],
        component: ComponentRecord,
    ) -> None:
        writer, _ = self._connections()
        values = _row(key, attribute_name, record, component)
        size = values["size"]
        if size < FILE_THRESHOLD:
            await self._execute(writer, _INSERT, values)
            return
        # The file first, then the row that points to it; shielded, so a cancelled store
        # cannot leave a file that no row points to.
        with anyio.CancelScope(shield=True):
            try:
                name = await anyio.to_thread.run_sync(self._write_file, record)
            except OSError as error:
                raise StorageError(f"SQLite store {str(self.path)!r}: {error}") from error
            values.update(payload=None, file=name)
            try:
                await self._execute(writer, _INSERT, values)
            except BaseException:
                await anyio.to_thread.run_sync(self._unlink, [name])
                raise
            await self._collect_garbage(writer)

    async def read_raw(self, key: str, attribute_name: str) -> Buffer | None:
        _, reader = self._connections()
        query = "SELECT payload, file FROM entries WHERE key = ? AND attribute = ?"
        for _attempt in range(5):
            rows = await self._sql(lambda: reader.execute_fetchall(query, (key, attribute_name)))
            if not rows:
                return None
            ((payload, name),) = rows
            if name is None:
                return bytearray(payload)
            data = await anyio.to_thread.run_sync(self._read_payload_file, name)
            if data is not None:
                return data
            # The record was replaced and its old file removed after we read the row.
        raise self._missing_payload(key, attribute_name)

    async def read_head_raw(self, key: str, attribute_name: str, size: int) -> Buffer | None:
        _, reader = self._connections()
        query = "SELECT substr(payload, 1, ?), file FROM entries WHERE key = ? AND attribute = ?"
        rows = await self._sql(
            functools.partial(reader.execute_fetchall, query, (size, key, attribute_name))
        )
        if not rows:
            return None
        ((head, name),) = rows
        if name is None:
            return bytes(head)
        try:
            return await anyio.to_thread.run_sync(_fsio.read_head, self._file_path(name), size)
        except OSError as error:
            raise StorageError(f"SQLite store {str(self.path)!r}: {error}") from error

    async def contains_raw(self, key: str, attribute_name: str) -> bool:
        _, reader = self._connections()
        rows = await self._sql(
            lambda: reader.execute_fetchall(
                "SELECT 1 FROM entries WHERE key = ? AND attribute = ?", (key, attribute_name)
            )
        )
        return bool(rows)

    async def write_many_raw(
        self, records: Sequence[tuple[str, str, Sequence[Buffer], ComponentRecord]]
    ) -> None:
        """All records in one transaction; large ones go to their files first."""
        writer, _ = self._connections()
        rows = [_row(key, name, record, component) for key, name, record, component in records]
        large = [
            (index, record)
            for index, (_, _, record, _) in enumerate(records)
            if rows[index]["size"] >= FILE_THRESHOLD
        ]
        assert self._write_lock is not None
        with anyio.CancelScope(shield=True):  # no files without rows, no open transaction
            names: list[str] = []
            if large:
                try:
                    names = await anyio.to_thread.run_sync(
                        lambda: [self._write_file(record) for _, record in large]
                    )
                except OSError as error:
                    raise StorageError(f"SQLite store {str(self.path)!r}: {error}") from error
            for (index, _), name in zip(large, names, strict=True):
                rows[index]["file"] = name
            statements = [
                _insert_rows(rows[start : start + _ROWS_PER_INSERT])
                for start in range(0, len(rows), _ROWS_PER_INSERT)
            ]
            try:
                async with self._write_lock:
                    if len(statements) == 1:  # one statement: its own transaction
                        await self._sql(lambda: writer.execute_fetchall(*statements[0]))
                    else:
                        await self._in_transaction(writer, statements)
            except BaseException:
                if names:
                    await anyio.to_thread.run_sync(self._unlink, names)
                raise
            if names:
                await self._collect_garbage(writer)

    async def _in_transaction(
        self, writer: aiosqlite.Connection, statements: list[tuple[str, list[Any]]]
    ) -> None:
        try:
            await self._sql(lambda: writer.execute("BEGIN IMMEDIATE"))
            for sql, arguments in statements:
                await self._sql(functools.partial(writer.execute, sql, arguments))
            await self._sql(lambda: writer.execute("COMMIT"))
        except BaseException:
            if writer.in_transaction:
                await writer.rollback()
            raise

    async def read_many_raw(self, pairs: Sequence[tuple[str, str]]) -> list[Buffer | None]:
        """One query per 400 entries; payload files read in one worker-thread hop."""
        found = {
            (str(key), str(name)): (payload, file)
            for key, name, payload, file in await self._select_pairs("payload, file", pairs)
        }
        files = {pair: value[1] for pair, value in found.items() if value[1] is not None}
        contents = await anyio.to_thread.run_sync(
            lambda: {pair: _fsio.read_file(self._file_path(name)) for pair, name in files.items()}
        )
        results: list[Buffer | None] = []
        for pair in pairs:
            if pair not in found:
                results.append(None)
            elif pair in contents:
                data = contents[pair]
                # replaced meanwhile: read it alone (read_raw retries)
                results.append(data if data is not None else await self.read_raw(*pair))
            else:
                results.append(bytearray(found[pair][0]))
        return results

    async def contains_many_raw(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        rows = await self._select_pairs("1", pairs)
        return {(str(key), str(name)) for key, name, _ in rows}

    async def _select_pairs(self, columns: str, pairs: Sequence[tuple[str, str]]) -> list[Any]:
        """``key, attribute, <columns>`` of the stored entries among `pairs`, on the reader,
        one query per 400 pairs (SQLite allows 999 bound parameters)."""
        _, reader = self._connections()
        rows: list[Any] = []
        for sql, arguments in _pair_queries(columns, pairs):
            rows.extend(await self._sql(functools.partial(reader.execute_fetchall, sql, arguments)))
        return rows

    async def components_raw(self, full_type: str | None) -> list[ComponentRecord]:
        _, reader = self._connections()
        sql = "SELECT key, full_type, version, parameters, input_keys FROM components"
        arguments: tuple[str, ...] = ()
        if full_type is not None:
            sql, arguments = sql + " WHERE full_type = ?", (full_type,)
        rows = await self._sql(functools.partial(reader.execute_fetchall, sql, arguments))
        return [
            ComponentRecord(
                key=str(key),
                full_type=str(kind),
                version=str(version),
                parameters=json.loads(parameters),
                input_keys=tuple(json.loads(input_keys)),
            )
            for key, kind, version, parameters, input_keys in rows
        ]

    async def delete_raw(self, key: str, attribute_name: str | None) -> int:
        writer, _ = self._connections()
        args: tuple[str, ...]
        if attribute_name is None:
            sql, args = "DELETE FROM entries WHERE key = ? RETURNING 1", (key,)
        else:
            sql = "DELETE FROM entries WHERE key = ? AND attribute = ? RETURNING 1"
            args = (key, attribute_name)
        rows = list(await self._sql(lambda: writer.execute_fetchall(sql, args)))
        if rows:
            await self._collect_garbage(writer)
        return len(rows)

    def lock_raw(
        self, key: str, attribute_name: str, timeout: float | None
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        if self._lock_file is not None:
            return self._lock_file.hold(key, attribute_name, timeout)
        # SQLite's directory is local (it warns otherwise): lock attempts run inline.
        lock = _locks.FileLock(self.lock_dir / _locks.lock_name(key, attribute_name), inline=True)
        return lock.hold(timeout)

    async def cleanup_raw(self, older_than: float) -> int:
        writer, reader = self._connections()
        await self._collect_garbage(writer)
        rows = await self._sql(
            lambda: reader.execute_fetchall("SELECT file FROM entries WHERE file IS NOT NULL")
        )
        referenced = {_relative_file(str(row[0])) for row in rows}
        return await anyio.to_thread.run_sync(
            _fsio.remove_unreferenced, str(self.payload_dir), referenced, older_than
        )

    async def list_raw(self) -> list[Entry]:
        _, reader = self._connections()
        rows = await self._sql(
            lambda: reader.execute_fetchall(
                "SELECT e.key, e.attribute, c.full_type, c.version, e.size, e.stored_at "
                "FROM entries e LEFT JOIN components c USING (key)"
            )
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


def _relative_file(name: str) -> str:
    """Where a payload file lives inside the payload directory (fanned out by prefix)."""
    return os.path.join(name[:2], name)


_INSERT = (
    "INSERT INTO store_entry (key, attribute, payload, file, size, stored_at, full_type, "
    "version, parameters, input_keys) VALUES (:key, :attribute, :payload, :file, :size, "
    ":stored_at, :full_type, :version, :parameters, :input_keys)"
)


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
    """The parameters of `_INSERT` for one record (payload in the row; files replace it)."""
    size = sum(memoryview(buffer).nbytes for buffer in record)
    return {
        "key": key,
        "attribute": attribute_name,
        "payload": b"".join(record) if size < FILE_THRESHOLD else None,
        "file": None,
        "size": size,
        "stored_at": datetime.now(UTC).timestamp(),
        "full_type": component.full_type,
        "version": component.version,
        "parameters": json.dumps(component.parameters, ensure_ascii=False),
        "input_keys": json.dumps(list(component.input_keys)),
    }


_unclosed: weakref.WeakSet[AsyncSQLiteDataStore] = weakref.WeakSet()
_inherited: list[sqlite3.Connection] = []  # a forked child's copies of its parent's readers


def _stop_unclosed() -> None:
    """At exit, stop the connection threads of stores nobody closed (they would hang it)."""
    for store in list(_unclosed):
        for connection in (store._writer, store._reader):
            if connection is not None:
                with warnings.catch_warnings(), contextlib.suppress(Exception):
                    warnings.simplefilter("ignore")
                    connection.stop()


at_shutdown(_stop_unclosed)
