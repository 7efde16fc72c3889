"""When entries were last read, in an SQLite store (for `max_size` & co.: ``_limits``).

A table of its own, ``used``, made at the first batch of reads: a store of schema version
2 stays one that older adatastore releases open (they check the version and ignore a
table they do not know), where a new column would have needed version 3.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .._storage.payloads import PayloadStore
from ..backend import Used
from ..records import Entry, same_record
from ._sqlite_sql import collect, pair_queries
from ._used_logs import note_time, skipped_notes

__all__ = ["LAST_USED", "delete_listed_unit", "last_used_rows", "read_notes", "touch_unit"]

_TABLE = """
CREATE TABLE IF NOT EXISTS used (
    key         TEXT NOT NULL,
    attribute   TEXT NOT NULL,
    used_at     REAL NOT NULL,   -- seconds since the epoch, of the last read noted
    PRIMARY KEY (key, attribute)
) WITHOUT ROWID
"""

_TOUCH = """
INSERT INTO used (key, attribute, used_at) VALUES (?, ?, ?)
    ON CONFLICT (key, attribute) DO UPDATE SET used_at = max(used_at, excluded.used_at)
"""

LAST_USED = "SELECT key, attribute, used_at FROM used"


def touch_unit(used: Sequence[Used], connection: sqlite3.Connection) -> None:
    """Note read times, in one transaction (a unit for the writer's thread)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(_TABLE)
        connection.executemany(_TOUCH, [(key, name, float(when)) for key, name, when in used])
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def last_used_rows(connection: sqlite3.Connection) -> list[Any]:
    """The ``used`` rows; none before the first batch of reads made the table."""
    try:
        return connection.execute(LAST_USED).fetchall()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return []
        raise


def read_notes(rows: Sequence[Any], where: str) -> dict[tuple[str, str], float]:
    """The ``used`` rows as read times; rows that are not (text, text, time) — planted or
    damaged: a TEXT or 400-digit ``used_at`` — skipped and counted in the log."""
    used, skipped = {}, 0
    for key, name, when in rows:
        seconds = note_time(when)
        if isinstance(key, str) and isinstance(name, str) and seconds is not None:
            used[key, name] = seconds
        else:
            skipped += 1
    skipped_notes(skipped, where)
    return used


def delete_listed_unit(
    entries: Sequence[Entry], payloads: PayloadStore, connection: sqlite3.Connection
) -> list[Entry]:
    """Delete the entries still as listed (`same_record`: a value stored in an entry's
    place since is kept) and their read notes, in one transaction; then their files."""
    gone = []
    connection.execute("BEGIN IMMEDIATE")
    try:
        has_used = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'used'"
        ).fetchall()
        wanted = {(entry.key, entry.attribute_name): entry for entry in entries}
        doomed = []
        for sql, arguments in pair_queries("size, stored_at", list(wanted)):
            for key, attribute, size, stored_at in connection.execute(sql, arguments):
                listed = wanted[key, attribute]
                now = dataclasses.replace(
                    listed, size=size, stored_at=datetime.fromtimestamp(stored_at, UTC)
                )
                if same_record(listed, now):
                    doomed.append((key, attribute, stored_at))
                    gone.append(listed)
        connection.executemany(
            "DELETE FROM entries WHERE key = ? AND attribute = ? AND stored_at = ?", doomed
        )
        if has_used:
            connection.executemany(
                "DELETE FROM used WHERE key = ? AND attribute = ?",
                [(key, attribute) for key, attribute, _ in doomed],
            )
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    collect(payloads, connection)
    return gone
