"""The listing of a bucket store: entry directories, their component records and
records, and the damaged component records `verify` reports.

An `EntryListing` reads a bucket under one prefix's ``e/``, its requests issued
concurrently (`Bucket.many`); the engine (`_backend`) delegates listing, components and
repair to it.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from ..._codec import record as _record
from ..._storage import naming as _naming
from ...records import ComponentRecord, DamagedEntry, Entry, damaged_component_reason
from .._bucket import Bucket

COMPONENT = "component.json"
RECORD_SUFFIX = ".rec"
MAX_JSON = 1 << 26  # a component.json or marker larger than this is not ours
KNOWN_COMPONENTS = 1 << 16
"""Component records kept between listings, at most (a store with more lists them all each
time): each costs a GET, and listings repeat (every eviction plan, `list_contents`)."""


class EntryListing:
    """What is stored under `under` (``<prefix>/e/``) in `objects`."""

    def __init__(self, objects: Bucket, under: str) -> None:
        self.objects = objects
        self.under = under if under.endswith("/") else under + "/"
        self._known: dict[str, tuple[str, ComponentRecord]] = {}
        """Component records read before, by entry directory, with the ETag they had: a
        listing shows each object's ETag, and an object with the same ETag has the same
        bytes (every write is a new ETag), so a record whose ETag is unchanged is not read
        again. Measured on the test server: 16 threads listing a store of ~150 entries
        took 15 s of a 33 s topology run, nearly all of it these GETs."""

    def entry_objects(self) -> dict[str, list[dict[str, Any]]]:
        """The objects under ``e/``, by entry directory (``<prefix>/e/<encoded key>/``)."""
        under = self.under
        found: dict[str, list[dict[str, Any]]] = {}
        for item in self.objects.listing(under):
            rest = item["Key"][len(under) :]
            entry, slash, name = rest.partition("/")
            if slash and name and "/" not in name:
                found.setdefault(under + entry + "/", []).append({**item, "Name": name})
        return found

    def _component_record(self, directory: str) -> ComponentRecord | None:
        """The component record of an entry directory, None when there is none;
        `ValueError` when it is damaged (does not parse, too large, nested too deep)."""
        found = self.objects.get(directory + COMPONENT)
        if found is None:
            return None
        return parse_component(found["Body"].read(MAX_JSON + 1))

    def _component(self, directory: str, etag: str | None = None) -> ComponentRecord | None:
        """The entry's component record for listing (a placeholder when it is damaged),
        from `_known` when its listed `etag` is the one it had when read."""
        known = self._known.get(directory)
        if known is not None and etag is not None and known[0] == etag:
            return known[1]
        found = self.objects.get(directory + COMPONENT)
        if found is None:
            return None
        try:
            record = parse_component(found["Body"].read(MAX_JSON + 1))
        except ValueError:  # damaged or planted: verify reports it (`blocking_planted`)
            encoded = directory.rstrip("/").rpartition("/")[2]
            record = ComponentRecord(decode_or(encoded), "", "", None, ())
        if len(self._known) < KNOWN_COMPONENTS:
            self._known[directory] = (str(found["ETag"]), record)
        return record

    def _listed_components(
        self, directories: dict[str, list[dict[str, Any]]]
    ) -> list[ComponentRecord | None]:
        """The component records of the listed entry directories (read concurrently,
        those not changed since they were read taken from `_known`, which then keeps
        only what this listing showed)."""
        etags = {
            directory: next(
                (str(item["ETag"]) for item in objects if item["Name"] == COMPONENT), None
            )
            for directory, objects in directories.items()
        }
        found = self.objects.many(
            [functools.partial(self._component, d, etag) for d, etag in etags.items()]
        )
        known = self._known
        self._known = {d: known[d] for d in etags if d in known}
        return found

    def _damaged_component(self, directory: str) -> str | None:
        try:
            self._component_record(directory)
        except ValueError as error:
            return str(error)
        return None

    def planted(self) -> list[DamagedEntry]:
        """Entries whose component record is damaged (their records are listed, and
        their reads report their own damage)."""
        directories = [
            directory
            for directory, objects in self.entry_objects().items()
            if any(item["Name"] == COMPONENT for item in objects)
        ]
        reasons = self.objects.many(
            [functools.partial(self._damaged_component, directory) for directory in directories]
        )
        return [
            DamagedEntry(
                decode_or(directory.rstrip("/").rpartition("/")[2]),
                "*",
                damaged_component_reason(directory + COMPONENT, why),
                directory + COMPONENT,
            )
            for directory, why in zip(directories, reasons, strict=True)
            if why is not None
        ]

    def remove_planted(self, item: DamagedEntry) -> int:
        """Remove the entry whose component record is damaged (still, when looked at
        again): its records and the record."""
        if item.path is None or not item.path.endswith("/" + COMPONENT):
            return 0
        directory = item.path[: -len(COMPONENT)]
        if self._damaged_component(directory) is None:
            return 0
        names = [str(found["Key"]) for found in self.objects.listing(directory)]
        doomed = [name for name in names if name.endswith(RECORD_SUFFIX)]
        self.objects.delete_many([*doomed, directory + COMPONENT])
        return 1

    def entries(self) -> list[Entry]:
        directories = {
            directory: objects
            for directory, objects in self.entry_objects().items()
            if any(item["Name"] == COMPONENT for item in objects)
        }
        components = self._listed_components(directories)
        entries = []
        for (directory, objects), component in zip(directories.items(), components, strict=True):
            if component is None:
                continue
            for item in objects:
                name = item["Name"]
                if not name.endswith(RECORD_SUFFIX) or name.startswith("."):
                    continue
                encoded = name[: -len(RECORD_SUFFIX)]
                attribute = self._attribute_name(directory + name, encoded)
                if attribute is None:
                    continue
                entries.append(
                    Entry(
                        key=component.key,
                        attribute_name=attribute,
                        full_type=component.full_type,
                        version=component.version,
                        size=int(item["Size"]),
                        stored_at=utc(item["LastModified"]),
                        generation=str(item["ETag"]),
                    )
                )
        return entries

    def _attribute_name(self, name: str, encoded: str) -> str | None:
        """A record's attribute name: decoded from its object name, or, for a shortened
        name, from the record's header (None when it is gone meanwhile)."""
        if not _naming.is_shortened(encoded):
            return decode_or(encoded)
        found = self.objects.get(name, Range="bytes=0-4095")
        if found is None:
            return None
        try:
            header, _ = _record.read_header(found["Body"].read())
        except _record.DamagedRecord:
            return encoded
        return header.attribute_name

    def components(self, full_type: str | None) -> list[ComponentRecord]:
        found = self._listed_components(self.entry_objects())
        return [
            record
            for record in found
            if record is not None
            and record.full_type
            and (full_type is None or record.full_type == full_type)
        ]


def parse_component(data: bytes) -> ComponentRecord:
    """A component record from its object's first `MAX_JSON` + 1 bytes; `ValueError` when
    it is damaged (does not parse, too large, nested too deep)."""
    if len(data) > MAX_JSON:
        raise ValueError("too large to be a component record")
    return ComponentRecord.from_json(data)


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def decode_or(encoded: str) -> str:
    try:
        return _naming.decode_name(encoded)
    except ValueError:
        return encoded
