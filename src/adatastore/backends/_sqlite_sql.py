"""SQLite's side of the SQLite back-end: the schema, connections, and the units of work
run whole in the writer's thread (kept apart from the back-end's Python-side logic).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import threading
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import anyio.to_thread

from .._codec import record as _record
from .._runtime import forks as _forks
from .._runtime.connection import ConnectionThread, is_busy
from .._storage import fsio as _fsio
from .._storage import locks as _locks
from .._storage.payloads import PayloadStore
from ..errors import ConfigurationError, NetworkFilesystemWarning
from ..records import ComponentRecord, json_text
from ..serializers import Buffer
from ..stats import logger

T = TypeVar("T")

__all__ = [
    "APPLICATION_ID",
    "CONTAINS",
    "FILE_THRESHOLD",
    "READ",
    "SCHEMA_VERSION",
    "Offload",
    "Query",
    "ReaderPool",
    "Step",
    "Steps",
    "Unit",
    "check_location",
    "collect",
    "connect",
    "delete_unit",
    "fetch",
    "in_row",
    "insert_statements",
    "one",
    "open_error",
    "pair_queries",
    "prepare",
    "release",
    "row",
    "run_steps",
    "run_steps_blocking",
    "warn_if_on_a_network_filesystem",
    "write_plan",
    "write_unit",
    "write_with_files",
]

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


def prepare(path: Path, create: bool, connection: sqlite3.Connection) -> None:
    """Set WAL mode and create or check the schema (a unit for the writer's thread)."""
    try:
        ((application_id,),) = connection.execute("PRAGMA application_id").fetchall()
        ((version,),) = connection.execute("PRAGMA user_version").fetchall()
        ((tables,),) = connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
        if application_id not in (0, APPLICATION_ID) or (
            application_id == 0 and tables and version == 0
        ):
            raise ConfigurationError(
                f"{str(path)!r} is an SQLite database of something else, not an adatastore store"
            )
        if not create and not tables:
            raise ConfigurationError(f"no store at {str(path)!r}: an empty database")
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"{str(path)!r} has schema version {version}; this adatastore "
                f"reads version {SCHEMA_VERSION}: upgrade adatastore"
            )
        connection.execute("PRAGMA journal_mode = WAL").fetchall()
        if version < SCHEMA_VERSION:
            _create_or_upgrade(path, connection)
    except sqlite3.DatabaseError as error:
        if connection.in_transaction:
            connection.rollback()
        raise ConfigurationError(f"cannot use {str(path)!r} as an SQLite store: {error}") from error


def _create_or_upgrade(path: Path, connection: sqlite3.Connection) -> None:
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
                logger.info("upgraded SQLite store %s to schema version 2", path)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.rollback()
        raise


def connect(path: Path, busy_timeout: float, durable: bool, read_only: bool) -> sqlite3.Connection:
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


class ReaderPool:
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


def release(
    unclosed: str | None,
    writer: ConnectionThread | None,
    reader: ConnectionThread | None,
    readers: ReaderPool | None,
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


def in_row(rows: list[Any]) -> bytearray | None:
    """The record of a `READ` result kept in its row; None when there is no row."""
    return bytearray(rows[0][0]) if rows else None


def fetch(sql: str, arguments: Sequence[Any], connection: sqlite3.Connection) -> list[Any]:
    return connection.execute(sql, arguments).fetchall()


def write_unit(
    statements: list[tuple[str, list[Any]]],
    moves: list[tuple[str, str]],
    durable: bool,
    payloads: PayloadStore,
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
    try:
        collect(payloads, connection)
    except sqlite3.OperationalError as error:
        if not is_busy(error):
            raise
        # another writer holds the lock (a unit run without waiting, `run_here`): the
        # queued files stay for the next collection; the rows are written


def delete_unit(
    key: str, attribute_name: str | None, payloads: PayloadStore, connection: sqlite3.Connection
) -> int:
    if attribute_name is None:
        rows = connection.execute("DELETE FROM entries WHERE key = ? RETURNING 1", (key,))
    else:
        rows = connection.execute(
            "DELETE FROM entries WHERE key = ? AND attribute = ? RETURNING 1",
            (key, attribute_name),
        )
    count = len(rows.fetchall())
    collect(payloads, connection)
    return count


def collect(payloads: PayloadStore, connection: sqlite3.Connection) -> None:
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


READ = "SELECT payload, file FROM entries WHERE key = ? AND attribute = ?"
CONTAINS = "SELECT 1 FROM entries WHERE key = ? AND attribute = ?"


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
    """One INSERT statement (so one implicit transaction) for several rows of `row`."""
    placeholders = "(" + ", ".join("?" * len(_COLUMNS)) + ")"
    sql = f"INSERT INTO store_entry ({', '.join(_COLUMNS)}) VALUES " + ", ".join(
        [placeholders] * len(rows)
    )
    return sql, [row[column] for row in rows for column in _COLUMNS]


def pair_queries(columns: str, pairs: Sequence[tuple[str, str]]) -> Iterator[tuple[str, list[str]]]:
    """``SELECT key, attribute, <columns>`` of the entries among `pairs`, 400 pairs a query
    (SQLite's historical limit is 999 bound parameters)."""
    for start in range(0, len(pairs), 400):
        chunk = pairs[start : start + 400]
        condition = " OR ".join(["(key = ? AND attribute = ?)"] * len(chunk))
        arguments = [value for pair in chunk for value in pair]
        yield f"SELECT key, attribute, {columns} FROM entries WHERE {condition}", arguments


def row(
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


def insert_statements(rows: Sequence[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    return [
        _insert_rows(rows[start : start + _ROWS_PER_INSERT])
        for start in range(0, len(rows), _ROWS_PER_INSERT)
    ]


# -- what a step of an SQLite operation asks for (see `SQLiteBackend._steps`) ------------------


class Query(NamedTuple):
    """A read query: on the reader's thread (async) or a pooled connection (blocking)."""

    sql: str
    arguments: Sequence[Any]


class Unit(NamedTuple):
    """A unit of work for the writer's thread."""

    unit: Callable[[sqlite3.Connection], Any]


class Offload(NamedTuple):
    """Blocking work (files): in a worker thread (async) or inline (blocking)."""

    function: Callable[..., Any]
    arguments: tuple[Any, ...]


Step = Query | Unit | Offload
Steps = Generator[Step, Any, T]


def one(step: Step) -> Steps[Any]:
    """An operation of one step."""
    return (yield step)


def check_location(path: Path, create: bool) -> None:
    """Refuse a path that cannot be an SQLite store; make its parent directories."""
    if path.is_dir():
        raise ConfigurationError(
            f"SQLite store path {str(path)!r} is a directory (a plain path names an "
            f"SQLite file); for a store of files there use the URL file://{path}"
        )
    if not create and not path.is_file():
        raise ConfigurationError(f"no store at {str(path)!r}: no such file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigurationError(
            f"cannot create {str(path.parent)!r}: a parent is not a directory"
        ) from None


def warn_if_on_a_network_filesystem(path: Path) -> None:
    """Say so, in the log and as a warning, when `path` is on NFS or SMB."""
    kind = _fsio.filesystem_type(str(path.parent), _fsio.MOUNTS_FILE)
    if kind in _fsio.NETWORK_FILESYSTEMS:
        message = (
            f"SQLite store {str(path)!r} is on a network file system ({kind}): "
            "SQLite's locking is unreliable there and concurrent writers can corrupt "
            "the database; share a cache between machines with the Django back-end on "
            "PostgreSQL (django+postgresql://...)"
        )
        logger.warning(message)
        warnings.warn(NetworkFilesystemWarning(message), stacklevel=3)


def open_error(path: Path, error: sqlite3.Error) -> ConfigurationError:
    """Why the database could not be opened, with the likely cause."""
    hint = ""
    if not os.access(path.parent, os.W_OK):
        hint = (
            "; its directory is not writable (read-only file system or permissions), "
            "and SQLite writes its journal beside the database"
        )
    return ConfigurationError(f"cannot open SQLite store {str(path)!r}: {error}{hint}")


async def run_steps(steps: Steps[T], writer: ConnectionThread, reader: ConnectionThread) -> T:
    """Carry out `steps` awaiting: queries on the reader's thread, units on the writer's,
    file work in a worker thread."""
    result: Any = None
    try:
        while True:
            step = steps.send(result)
            if isinstance(step, Query):
                result = await reader.arun(functools.partial(fetch, *step))
            elif isinstance(step, Unit):
                result = await writer.arun(step.unit)
            else:
                result = await anyio.to_thread.run_sync(step.function, *step.arguments)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def run_steps_blocking(steps: Steps[T], writer: ConnectionThread, readers: ReaderPool) -> T:
    """Carry out `steps` in the calling thread (units still on the writer's thread)."""
    result: Any = None
    try:
        while True:
            step = steps.send(result)
            if isinstance(step, Query):
                result = readers.query(*step)
            elif isinstance(step, Unit):
                result = writer.run(step.unit)
            else:
                result = step.function(*step.arguments)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


# -- how records are written -------------------------------------------------------------------


def write_plan(
    records: Sequence[tuple[str, str, Sequence[Buffer], ComponentRecord]],
    payloads: PayloadStore,
    durable: bool,
    writer: ConnectionThread,
) -> tuple[Callable[[sqlite3.Connection], None] | None, Callable[[], None] | None]:
    """How to write records in one unit (one transaction): (the unit, None) when all stay
    in rows; (None, a blocking call) when some go to files (`write_with_files`). A plan,
    not steps: a write is one hop either way, and a generator cost ~20,000 instructions
    a blocking store (callgrind)."""
    rows = [row(key, name, record, component) for key, name, record, component in records]
    for item in rows:
        if item["size"] >= FILE_THRESHOLD:
            buffers = [record for _, _, record, _ in records]
            return None, functools.partial(
                write_with_files, rows, buffers, payloads, durable, writer
            )
    return functools.partial(write_unit, insert_statements(rows), [], durable, payloads), None


def write_with_files(
    rows: list[dict[str, Any]],
    records: Sequence[Sequence[Buffer]],
    payloads: PayloadStore,
    durable: bool,
    writer: ConnectionThread,
) -> None:
    """Write the large records to temporary files, then the rows in one unit that renames
    the files into place; blocking, so (in a worker thread on the async path) it runs to
    its end even when the caller is cancelled: no file is left behind."""
    moves: list[tuple[str, str]] = []
    try:
        for item, record in zip(rows, records, strict=True):
            if item["size"] >= FILE_THRESHOLD:
                name, temp = payloads.write_temp(record, durable=durable)
                item["file"] = name
                moves.append((temp, name))
    except BaseException:
        for temp, _ in moves:
            payloads.remove_temp(temp)
        raise
    # From here on the unit owns the temporary files: it renames or removes them.
    writer.run(functools.partial(write_unit, insert_statements(rows), moves, durable, payloads))
