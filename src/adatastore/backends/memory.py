"""An in-process back-end: a dict. For tests, notebooks and caches that need not persist.

It runs on any event loop (asyncio or trio). Values are stored serialized, so a retrieved
value is a fresh copy and what cannot be stored elsewhere cannot be stored here either.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from .. import _record
from ..keygenerators import KeyGenerator
from ..serializers import Buffer, Serializer
from ..signing import SigningKey
from ..store import AsyncDataStore, ComponentRecord, Entry

__all__ = ["AsyncMemoryDataStore"]


class AsyncMemoryDataStore(AsyncDataStore):
    """Keeps every entry in a dict in this process; gone when the object is."""

    def __init__(
        self,
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        *,
        signing_key: SigningKey | None = None,
        verify_on_read: bool = True,
    ) -> None:
        super().__init__(
            key_generator, serializer, signing_key=signing_key, verify_on_read=verify_on_read
        )
        # key -> attribute name -> (record, time stored); and key -> component record
        self._records: dict[str, dict[str, tuple[bytes, datetime]]] = {}
        self._components: dict[str, ComponentRecord] = {}

    async def write_raw(
        self,
        key: str,
        attribute_name: str,
        record: Sequence[Buffer],
        component: ComponentRecord,
    ) -> None:
        data = b"".join(record)
        seconds = _record.stored_at(record)
        when = datetime.now(UTC) if seconds is None else datetime.fromtimestamp(seconds, UTC)
        self._components.setdefault(key, component)
        self._records.setdefault(key, {})[attribute_name] = (data, when)

    async def read_raw(self, key: str, attribute_name: str) -> Buffer | None:
        found = self._records.get(key, {}).get(attribute_name)
        # A fresh, writable copy: arrays rebuilt from it can be modified by the caller.
        return None if found is None else bytearray(found[0])

    async def contains_raw(self, key: str, attribute_name: str) -> bool:
        return attribute_name in self._records.get(key, {})

    async def delete_raw(self, key: str, attribute_name: str | None) -> int:
        attributes = self._records.get(key, {})
        if attribute_name is None:
            deleted = len(attributes)
            attributes.clear()
        else:
            deleted = int(attributes.pop(attribute_name, None) is not None)
        if not attributes:
            self._records.pop(key, None)
            self._components.pop(key, None)
        return deleted

    async def list_raw(self) -> list[Entry]:
        return [
            Entry(
                key=key,
                attribute_name=name,
                full_type=self._components[key].full_type,
                version=self._components[key].version,
                size=len(data),
                stored_at=stored_at,
            )
            for key, attributes in self._records.items()
            for name, (data, stored_at) in attributes.items()
        ]

    async def components_raw(self, full_type: str | None) -> list[ComponentRecord]:
        return [
            component
            for component in self._components.values()
            if full_type is None or component.full_type == full_type
        ]

    async def close_raw(self) -> None:
        self._records.clear()
        self._components.clear()
