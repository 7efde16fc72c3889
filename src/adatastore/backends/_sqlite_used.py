"""When entries were last read, in an SQLite store (for `max_size` & co.: ``_limits``).

A table of its own, ``used``, made at the first batch of reads: a store of schema version
2 stays one that older adatastore releases open (they check the version and ignore a
table they do not know), where a new column would have needed version 3.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from .._payloads import PayloadStore
from ..backend import Used
from ._sqlite_sql import collect, pair_queries

__all__ = ["LAST_USED", "delete_many_unit", "last_used_rows", "touch_unit"]

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


def delete_many_unit(
    pairs: Sequence[tuple[str, str]], payloads: PayloadStore, connection: sqlite3.Connection
) -> int:
    """Delete several entries and their read notes in one transaction; then their files."""
    count = 0
    connection.execute("BEGIN IMMEDIATE")
    try:
        has_used = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'used'"
        ).fetchall()
        for sql, arguments in pair_queries("1", pairs):
            condition = sql.partition(" WHERE ")[2]
            count += len(
                connection.execute(
                    f"DELETE FROM entries WHERE {condition} RETURNING 1", arguments
                ).fetchall()
            )
            if has_used:
                connection.execute(f"DELETE FROM used WHERE {condition}", arguments)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    collect(payloads, connection)
    return count
