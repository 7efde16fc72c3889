"""Back-ends written the 0.2 way, as subclasses of `AsyncDataStore` overriding ``*_raw``.

`LegacyBackend` adapts such a store to the `Backend` contract, so the facade treats it
like any other back-end; defining such a subclass warns (`DeprecationWarning`): the way
is kept for one release. New back-ends subclass `adatastore.backend.Backend`.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Sequence
from typing import Any

from ..backend import Backend, RecordWrite
from ..records import ComponentRecord, DamagedEntry, Entry
from ..serializers import Buffer

__all__ = ["HOOKS", "LegacyBackend", "defines_hooks"]

HOOKS = ("write_raw", "read_raw", "contains_raw", "delete_raw", "list_raw")
"""The hooks every 0.2 back-end implemented."""


def defines_hooks(cls: type) -> bool:
    """Whether `cls` (a subclass of the facade) implements the 0.2 hooks."""
    return any(hasattr(cls, name) for name in HOOKS)


class LegacyBackend(Backend):
    """The ``*_raw`` methods of a 0.2-style store, as a `Backend`."""

    def __init__(self, store: Any) -> None:
        # weakly: the store holds its back-end, and a cycle would delay its collection
        self.store = weakref.proxy(store)
        self.requires_asyncio = bool(getattr(store, "requires_asyncio", False))  # type: ignore[misc]
        self.supports_blocking = bool(getattr(store, "supports_blocking", False))  # type: ignore[misc]

    def _hook(self, name: str) -> Any:
        return getattr(self.store, name, None)

    async def open(self) -> None:
        if (hook := self._hook("open_raw")) is not None:
            await hook()

    async def close(self) -> None:
        if (hook := self._hook("close_raw")) is not None:
            await hook()

    def forget(self) -> None:
        if (hook := self._hook("forget_raw")) is not None:
            hook()

    async def write(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        await self.store.write_raw(key, attribute_name, record, component)

    async def read(self, key: str, attribute_name: str) -> Buffer | None:
        data: Buffer | None = await self.store.read_raw(key, attribute_name)
        return data

    async def contains(self, key: str, attribute_name: str) -> bool:
        return bool(await self.store.contains_raw(key, attribute_name))

    async def delete(self, key: str, attribute_name: str | None) -> int:
        return int(await self.store.delete_raw(key, attribute_name))

    async def entries(self) -> list[Entry]:
        return list(await self.store.list_raw())

    async def write_many(self, records: Sequence[RecordWrite]) -> None:
        if (hook := self._hook("write_many_raw")) is not None:
            await hook(records)
        else:
            await super().write_many(records)

    async def read_many(self, pairs: Sequence[tuple[str, str]]) -> list[Buffer | None]:
        if (hook := self._hook("read_many_raw")) is not None:
            return list(await hook(pairs))
        return await super().read_many(pairs)

    async def contains_many(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        if (hook := self._hook("contains_many_raw")) is not None:
            return set(await hook(pairs))
        return await super().contains_many(pairs)

    async def read_head(self, key: str, attribute_name: str, size: int) -> Buffer | None:
        if (hook := self._hook("read_head_raw")) is not None:
            data: Buffer | None = await hook(key, attribute_name, size)
            return data
        return await self.read(key, attribute_name)

    async def components(self, full_type: str | None) -> list[ComponentRecord]:
        if (hook := self._hook("components_raw")) is not None:
            return list(await hook(full_type))
        return await super().components(full_type)

    def lock(
        self, key: str, attribute_name: str, timeout: float | None
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        if (hook := self._hook("lock_raw")) is not None:
            lock: contextlib.AbstractAsyncContextManager[bool] = hook(key, attribute_name, timeout)
            return lock
        return super().lock(key, attribute_name, timeout)

    async def cleanup(self, older_than: float) -> int:
        if (hook := self._hook("cleanup_raw")) is not None:
            return int(await hook(older_than))
        return 0

    async def planted(self) -> list[DamagedEntry]:
        if (hook := self._hook("planted_raw")) is not None:
            return list(await hook())
        return []

    async def remove_planted(self, item: DamagedEntry) -> int:
        if (hook := self._hook("remove_planted_raw")) is not None:
            return int(await hook(item))
        return 0

    def blocking_open(self) -> None:
        if (hook := self._hook("open_raw_blocking")) is not None:
            hook()

    def blocking_close(self) -> None:
        if (hook := self._hook("close_raw_blocking")) is not None:
            hook()

    def blocking_write(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        self.store.write_raw_blocking(key, attribute_name, record, component)

    def blocking_read(self, key: str, attribute_name: str) -> Buffer | None:
        data: Buffer | None = self.store.read_raw_blocking(key, attribute_name)
        return data

    def blocking_contains(self, key: str, attribute_name: str) -> bool:
        return bool(self.store.contains_raw_blocking(key, attribute_name))
