"""`AsyncMemoryDataStore` and `MemoryDataStore`: the memory engine under the facade."""

from __future__ import annotations

from typing import Unpack

from .._core.options import StoreOptions
from ..backends.memory import MemoryBackend
from ..keygenerators import KeyGenerator
from ..serializers import Serializer
from ..store import AsyncDataStore
from ..sync import SyncDataStore

__all__ = ["AsyncMemoryDataStore", "MemoryDataStore"]


class AsyncMemoryDataStore(AsyncDataStore):
    """Keeps every entry in a dict in this process; gone when the object is."""

    def __init__(
        self,
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        **options: Unpack[StoreOptions],
    ) -> None:
        super().__init__(
            MemoryBackend(),
            key_generator=key_generator,
            serializer=serializer,
            **options,
        )


class MemoryDataStore(SyncDataStore[AsyncMemoryDataStore]):
    """Blocking in-process store, for tests and throw-away caches."""

    def __init__(
        self,
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        **options: Unpack[StoreOptions],
    ) -> None:
        super().__init__(AsyncMemoryDataStore(key_generator, serializer, **options))
