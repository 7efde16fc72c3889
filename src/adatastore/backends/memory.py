"""An in-process back-end: a dict. For tests, notebooks and caches that need not persist.

It runs on any event loop (asyncio or trio) and, blocking, in the caller's thread. Values
are stored serialized, so a retrieved value is a fresh copy and what cannot be stored
elsewhere cannot be stored here either.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from .._codec import record as _record
from ..backend import Backend, Used
from ..records import ComponentRecord, Entry, same_record
from ..serializers import Buffer

__all__ = ["AsyncMemoryDataStore", "MemoryBackend", "MemoryDataStore"]


class MemoryBackend(Backend):
    """Records in a dict of this process. Each method is a few dict operations, atomic
    under the GIL, so the async methods call the blocking ones: no thread hop."""

    supports_blocking: ClassVar[bool] = True

    def __init__(self) -> None:
        # key -> attribute name -> (record, time stored); and key -> component record
        self.records: dict[str, dict[str, tuple[bytes, datetime]]] = {}
        self.component_records: dict[str, ComponentRecord] = {}
        self.used: dict[tuple[str, str], float] = {}
        """When entries were last read (`touch_many`)."""

    def blocking_open(self) -> None:
        pass

    def blocking_close(self) -> None:
        self.records.clear()
        self.component_records.clear()

    def blocking_write(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        data = b"".join(record)
        seconds = _record.stored_at(record)
        when = datetime.now(UTC) if seconds is None else datetime.fromtimestamp(seconds, UTC)
        self.component_records.setdefault(key, component)
        self.records.setdefault(key, {})[attribute_name] = (data, when)

    def blocking_read(self, key: str, attribute_name: str) -> Buffer | None:
        found = self.records.get(key, {}).get(attribute_name)
        # A fresh, writable copy: arrays rebuilt from it can be modified by the caller.
        return None if found is None else bytearray(found[0])

    def blocking_contains(self, key: str, attribute_name: str) -> bool:
        return attribute_name in self.records.get(key, {})

    def blocking_touch_many(self, used: Sequence[Used]) -> None:
        for key, name, when in used:
            self.used[key, name] = max(when, self.used.get((key, name), 0.0))

    async def touch_many(self, used: Sequence[Used]) -> None:
        self.blocking_touch_many(used)

    async def last_used(self) -> dict[tuple[str, str], float]:
        for pair in [pair for pair in self.used if not self.blocking_contains(*pair)]:
            del self.used[pair]  # deleted entries' notes
        return dict(self.used)

    async def close(self) -> None:
        self.blocking_close()

    async def write(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        self.blocking_write(key, attribute_name, record, component)

    async def read(self, key: str, attribute_name: str) -> Buffer | None:
        return self.blocking_read(key, attribute_name)

    async def contains(self, key: str, attribute_name: str) -> bool:
        return self.blocking_contains(key, attribute_name)

    async def delete(self, key: str, attribute_name: str | None) -> int:
        attributes = self.records.get(key, {})
        if attribute_name is None:
            deleted = len(attributes)
            attributes.clear()
        else:
            deleted = int(attributes.pop(attribute_name, None) is not None)
        if not attributes:
            self.records.pop(key, None)
            self.component_records.pop(key, None)
        return deleted

    async def entries(self) -> list[Entry]:
        return [
            self._entry(key, name, data, stored_at)
            for key, attributes in list(self.records.items())
            for name, (data, stored_at) in list(attributes.items())
        ]

    def _entry(self, key: str, name: str, data: bytes, stored_at: datetime) -> Entry:
        component = self.component_records[key]
        return Entry(key, name, component.full_type, component.version, len(data), stored_at)

    async def delete_listed(self, entries: Sequence[Entry]) -> list[Entry]:
        """Compare and delete with no await between: atomic on the loop (and the GIL)."""
        gone = []
        for entry in entries:
            found = self.records.get(entry.key, {}).get(entry.attribute_name)
            if found is not None and same_record(
                entry, self._entry(entry.key, entry.attribute_name, *found)
            ):
                await self.delete(entry.key, entry.attribute_name)
                gone.append(entry)
        return gone

    async def components(self, full_type: str | None) -> list[ComponentRecord]:
        return [
            component
            for component in list(self.component_records.values())
            if full_type is None or component.full_type == full_type
        ]


if TYPE_CHECKING:
    from .._stores.memory import AsyncMemoryDataStore, MemoryDataStore


def __getattr__(name: str) -> Any:
    """The named stores (AsyncMemoryDataStore, MemoryDataStore) live above the facade, in
    ``adatastore._stores``; their import path here is served when asked for (PEP 562)."""
    if name in ("AsyncMemoryDataStore", "MemoryDataStore"):
        from .._stores import memory

        return getattr(memory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
