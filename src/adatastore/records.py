"""What the public API returns: entries, component records, verify and warm reports.

Plain frozen data; no behaviour beyond (de)serializing a `ComponentRecord`, which the
back-ends keep beside the data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .serializers import Buffer

__all__ = [
    "ComponentRecord",
    "DamagedEntry",
    "Entry",
    "VerifyReport",
    "WarmProgress",
    "WarmReport",
    "WorkerTally",
    "damaged_component_reason",
    "json_text",
    "parse_stored_json",
    "same_record",
    "storable_text",
]


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored attribute of one component, as `list_contents` reports it."""

    key: str
    attribute_name: str
    full_type: str
    version: str
    size: int
    """Bytes the entry takes in storage (its record, envelope included)."""
    stored_at: datetime
    """When the entry was last written (timezone-aware, UTC)."""
    generation: str | None = field(default=None, compare=False, repr=False)
    """What tells this very record from one written in its place since, where the
    back-end has more than `stored_at` (a bucket's ETag, a file's inode); opaque. Eviction,
    ``prune`` and ``verify --repair`` delete an entry only while it is unchanged
    (`same_record`)."""


def same_record(listed: Entry, now: Entry) -> bool:
    """Whether `now` is still the record `listed` was: same time stored, size and
    generation (a value stored again in its place since differs in all three)."""
    return (
        listed.stored_at == now.stored_at
        and listed.size == now.size
        and listed.generation == now.generation
    )


@dataclass(frozen=True, slots=True)
class ComponentRecord:
    """What a store records about a component besides its data: who it is and what it used."""

    key: str
    full_type: str
    version: str
    parameters: Any
    """The parameters, rendered JSON-compatible by `keygenerators.describe_parameters`."""
    input_keys: tuple[str, ...]

    def to_json(self) -> bytes:
        """Serialize to UTF-8 JSON."""
        return json_text(
            {
                "key": self.key,
                "full_type": self.full_type,
                "version": self.version,
                "parameters": self.parameters,
                "input_keys": list(self.input_keys),
            },
            sort_keys=True,
        ).encode("utf-8")

    @classmethod
    def from_json(cls, data: Buffer) -> ComponentRecord:
        """Parse what `to_json` wrote; raise `ValueError` when it is not that (bounded:
        `parse_stored_json`)."""
        fields = parse_stored_json(data)
        try:
            return cls(
                key=str(fields["key"]),
                full_type=str(fields["full_type"]),
                version=str(fields["version"]),
                parameters=fields["parameters"],
                input_keys=tuple(str(k) for k in fields["input_keys"]),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a component record: {error!r}") from None


MOST_JSON_BYTES = 1 << 26
"""A component record (or its parameters) larger than this (64 MiB) is not one we wrote."""
MOST_JSON_DEPTH = 256
"""Nesting deeper than this in a component record is not parameters but an attack: 100,000
nested ``[`` made every listing, repair and limited store raise `RecursionError`."""


def parse_stored_json(data: Buffer | str) -> Any:
    """JSON read back from storage, where anyone with write access may have planted it:
    `ValueError` when it is not JSON, larger than `MOST_JSON_BYTES` or nested deeper than
    `MOST_JSON_DEPTH` (checked after parsing, without recursion; a nesting too deep for
    the parser itself is refused too), so nothing that walks it later can recurse out."""
    if isinstance(data, str):
        text = data
    else:
        if memoryview(data).nbytes > MOST_JSON_BYTES:
            raise ValueError("too large to be a component record")
        text = bytes(data).decode("utf-8", "surrogatepass")
    if len(text) > MOST_JSON_BYTES:
        raise ValueError("too large to be a component record")
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to be a component record") from None
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MOST_JSON_DEPTH:
            raise ValueError(f"nested deeper than {MOST_JSON_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend(
                (inner, depth + 1) for inner in item.values() if isinstance(inner, dict | list)
            )
        elif isinstance(item, list):
            stack.extend((inner, depth + 1) for inner in item if isinstance(inner, dict | list))
    return value


def damaged_component_reason(where: str, why: str) -> str:
    """What `verify` says of an entry whose component record does not parse."""
    return (
        f"its component record {where!r} is damaged ({why}): its records cannot be listed, "
        "limited or explained; 'adatastore verify --repair' removes the entry"
    )


def json_text(value: Any, *, sort_keys: bool = False) -> str:
    """JSON text that any database can store: readable UTF-8, or, when the value holds a
    lone surrogate (a non-UTF-8 file name from ``os.listdir``), ``\\udXXX`` escapes,
    which read back to the very same string."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=sort_keys)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, sort_keys=sort_keys)
    return text


def storable_text(text: str) -> str:
    """`text` for a text column: a lone surrogate written as ``\\udXXX`` (metadata only:
    keys are made from the value itself)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


@dataclass(frozen=True, slots=True)
class DamagedEntry:
    """An entry `verify` found damaged, and why."""

    key: str
    attribute_name: str
    """The attribute, or ``"*"`` for damage to the whole entry (its directory, metadata)."""
    reason: str
    path: str | None = None
    """Where in the storage, for damage that is not a record (a planted link, say)."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What `verify` checked and found."""

    checked: int
    damaged: tuple[DamagedEntry, ...]
    removed: int
    """Damaged entries deleted (with ``repair=True``)."""
    unreadable: tuple[DamagedEntry, ...] = ()
    """Entries whose storage refused the read (a `StorageError`: a mount that is down, a
    server that does not answer): not judged, never removed; verify again when it is
    back."""

    @property
    def ok(self) -> bool:
        """Whether every entry was read and none was damaged."""
        return not self.damaged and not self.unreadable


@dataclass
class WarmProgress:
    """Where a `warm` run is, passed to a progress callback after each component."""

    total: int
    """Distinct components to go through: the number given at first, less the repeats and
    unusable components as they are found."""
    duplicates: int = 0
    done: int = 0
    computed: int = 0
    already_stored: int = 0
    failed: int = 0
    in_flight: int = 0
    """Tasks submitted to an executor and not yet finished (``warm(executor=...)``)."""
    stale: int = 0
    """Of `already_stored`, entries made by other code than their type's (or compute
    function's) now, under the same version (see `StaleCodeWarning`)."""


@dataclass(frozen=True, slots=True)
class WorkerTally:
    """What one worker process did in a ``warm(executor=...)``."""

    computed: int = 0
    """Components it computed and stored."""
    already_stored: int = 0
    """Components it found stored (another process had just stored them)."""
    failed: int = 0
    seconds: float = 0.0
    """Time its tasks took, computing and storing."""
    bytes: int = 0
    """Bytes of the records it stored."""


@dataclass(frozen=True)
class WarmReport:
    """What `warm` did."""

    computed: int
    already_stored: int
    duplicates: int
    """Components given more than once (computed once)."""
    failed: tuple[tuple[object, BaseException], ...]
    """(component, exception) for every failure."""
    workers: Mapping[str, WorkerTally] = field(default_factory=dict)
    """With an executor: what each worker process (``host:pid``) did."""
    stale: int = 0
    """Of `already_stored`, entries made by other code than their type's (or compute
    function's) now under the same version: kept, not recomputed, and warned about
    once per type (`StaleCodeWarning`; bump the version to recompute). Counted when
    entries are checked (``check_stored=True``, the default)."""

    @property
    def ok(self) -> bool:
        """Whether nothing failed."""
        return not self.failed
