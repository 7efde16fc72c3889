"""Component rows of an SQLite store that do not parse (planted or damaged: a
``parameters`` column of 100,000 nested ``[``): `components` passes them over, `verify`
reports them and ``verify --repair`` removes their entries."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from .._storage.payloads import PayloadStore
from ..records import ComponentRecord, DamagedEntry, damaged_component_reason, parse_stored_json
from ._sqlite_sql import collect

__all__ = ["COMPONENTS", "parse_components", "remove_component_unit"]

COMPONENTS = "SELECT key, full_type, version, parameters, input_keys FROM components"


def component_of(row: Sequence[Any]) -> ComponentRecord:
    """One ``components`` row as a record; `ValueError` when it is damaged."""
    key, full_type, version, parameters, input_keys = row
    if not all(isinstance(text, str) for text in row):
        raise ValueError("a column is not text")
    inputs = parse_stored_json(input_keys)
    if not isinstance(inputs, list) or not all(isinstance(item, str) for item in inputs):
        raise ValueError("its input keys are not a list of keys")
    return ComponentRecord(key, full_type, version, parse_stored_json(parameters), tuple(inputs))


def parse_components(
    rows: Sequence[Sequence[Any]],
) -> tuple[list[ComponentRecord], list[DamagedEntry]]:
    """The records of the rows that parse, and the damage of those that do not."""
    records, damaged = [], []
    for row in rows:
        try:
            records.append(component_of(row))
        except (ValueError, TypeError) as error:
            where = f"components row of {str(row[0])[:12]!r}"
            damaged.append(
                DamagedEntry(str(row[0]), "*", damaged_component_reason(where, str(error)))
            )
    return records, damaged


def remove_component_unit(key: str, payloads: PayloadStore, connection: sqlite3.Connection) -> int:
    """Remove a component whose row is damaged (still, when looked at again, in the same
    transaction), with every entry of it; then their files."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        rows = connection.execute(COMPONENTS + " WHERE key = ?", (key,)).fetchall()
        if not rows or parse_components(rows)[1] == []:
            connection.execute("ROLLBACK")
            return 0
        connection.execute("DELETE FROM entries WHERE key = ?", (key,))
        connection.execute("DELETE FROM components WHERE key = ?", (key,))
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    collect(payloads, connection)
    return 1
