"""What an operation of the core asks its driver for: the requests it yields.

An operation is a generator (psycopg 3's model): it yields a request, a plain tuple whose
first item says what it is, and the driver (`ops.drive`, `ops.drive_blocking`) does it and
sends back the result. Building a tuple is one bytecode, where a request class cost a
Python call (``__init__``) per step — ~1,500 instructions a retrieve (callgrind).

The kinds live in their own module so every operation — the direct ones in ``ops``, the
checks in ``checks``, eviction in ``limits``, ``verify`` — asks in the same words, below
the drivers.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

from ..errors import CorruptEntryError, IntegrityError, StorageError

__all__ = [
    "CONTAINS",
    "CONTAINS_MANY",
    "DELETE_LISTED",
    "ENTRIES",
    "EVICT",
    "LAST_USED",
    "OFFLOAD",
    "PLANTED",
    "READ",
    "READ_ERRORS",
    "READ_MANY",
    "READ_MANY_MAPPED",
    "READ_MAPPED",
    "READ_OR_ERROR",
    "REMOVE_PLANTED",
    "TOUCH",
    "WRITE",
    "WRITE_MANY",
    "Operation",
    "Request",
]

T = TypeVar("T")

READ = "read"
"""``(READ, key, name)`` → the record, or None."""
READ_MANY = "read many"
"""``(READ_MANY, pairs)`` → a record or None per pair."""
READ_MAPPED = "read mapped"
"""``(READ_MAPPED, key, name, mode)`` → the record as a map of its file where it has one
(`Backend.read_mapped`), or None."""
READ_MANY_MAPPED = "read many mapped"
"""``(READ_MANY_MAPPED, pairs, mode)`` → as `READ_MANY`, files mapped."""
CONTAINS = "contains"
"""``(CONTAINS, key, name)`` → whether a record is stored."""
CONTAINS_MANY = "contains many"
"""``(CONTAINS_MANY, pairs)`` → the set of pairs stored."""
WRITE = "write"
"""``(WRITE, key, name, record buffers, component record)`` → None."""
WRITE_MANY = "write many"
"""``(WRITE_MANY, [RecordWrite, ...])`` → None."""
TOUCH = "touch"
"""``(TOUCH, [(key, name, when), ...])``: record when entries were read → None."""
ENTRIES = "entries"
"""``(ENTRIES,)`` → every entry stored (`Backend.entries`)."""
LAST_USED = "last used"
"""``(LAST_USED,)`` → when each entry was last read (`Backend.last_used`)."""
EVICT = "evict"
"""``(EVICT, entries)``: delete those whose lock is free at once and that are still the
records listed → the entries deleted (`ops.evict`)."""
DELETE_LISTED = "delete listed"
"""``(DELETE_LISTED, entries)`` → those still as listed, now deleted
(`Backend.delete_listed`)."""
PLANTED = "planted"
"""``(PLANTED,)`` → what was planted among the store's files (`Backend.planted`)."""
REMOVE_PLANTED = "remove planted"
"""``(REMOVE_PLANTED, item)`` → how many were removed (`Backend.remove_planted`)."""
READ_OR_ERROR = "read or error"
"""``(READ_OR_ERROR, key, name)`` → the record, None, or the `READ_ERRORS` error reading
it raised (`verify` judges each entry and goes on)."""
READ_ERRORS = (CorruptEntryError, IntegrityError, StorageError)
OFFLOAD = "offload"
"""``(OFFLOAD, function, *args)``: CPU work (sealing or checking a large record) → its
result; in a worker thread on the async path, inline on the blocking one."""

Request = tuple[Any, ...]
Operation = Generator[Request, Any, T]
