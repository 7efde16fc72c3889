"""Reading records from SQLite, as steps (`_sqlite_sql.Steps`): a row's payload, or the
payload file it names (mapped for ``retrieve(mmap=True)``), read again when the record was
replaced between the query and the file's read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._storage.fsio import MapMode
from .._storage.payloads import PayloadStore, missing
from ..errors import DataStoreError
from ..serializers import Buffer
from ._sqlite_sql import READ, Offload, Query, Steps, in_row, pair_queries

__all__ = ["reading", "reading_many"]


def reading(
    payloads: PayloadStore,
    key: str,
    attribute_name: str,
    rows: list[Any] | None,
    mode: MapMode | None,
) -> Steps[Buffer | None]:
    """The record (its file mapped with `mode`); `rows`, when given, is the first
    `READ` result (not queried again)."""
    for _attempt in range(5):
        if rows is None:
            rows = yield Query(READ, (key, attribute_name))
        if not rows or rows[0][1] is None:
            return in_row(rows)
        ((_, name),) = rows
        data = yield Offload(payloads.read_entry, (key, attribute_name, name, mode))
        if data is not None:
            return data  # type: ignore[no-any-return]
        rows = None  # replaced, its old file removed after we read the row: read again
    error: DataStoreError = yield Offload(missing, (payloads, key, attribute_name, "payload file"))
    raise error


def reading_many(
    payloads: PayloadStore, pairs: Sequence[tuple[str, str]], mode: MapMode | None
) -> Steps[list[Buffer | None]]:
    """One query per 400 entries; payload files read in one step."""
    rows: list[Any] = []
    for sql, arguments in pair_queries("payload, file", pairs):
        rows.extend((yield Query(sql, arguments)))
    found = {(str(key), str(name)): (payload, file) for key, name, payload, file in rows}
    files = [(pair, found[pair][1]) for pair in pairs if pair in found and found[pair][1]]
    read: dict[tuple[str, str], Buffer | None] = {}
    if files:
        read = yield Offload(_payloads_of, (payloads, files, mode))
    results: list[Buffer | None] = []
    for pair in pairs:
        if pair not in found:
            results.append(None)
        elif found[pair][1] is None:
            results.append(bytearray(found[pair][0]))
        elif (data := read[pair]) is not None:
            results.append(data)
        else:  # replaced meanwhile: read it alone (that retries)
            results.append((yield from reading(payloads, *pair, None, mode)))
    return results


def _payloads_of(
    payloads: PayloadStore, files: list[tuple[tuple[str, str], str]], mode: MapMode | None
) -> dict[tuple[str, str], Buffer | None]:
    return {pair: payloads.read_entry(*pair, name, mode) for pair, name in files}
