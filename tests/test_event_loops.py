"""Event loops: what runs on trio, and the clear error for back-ends that cannot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from components import SimpleComponent

from adatastore import AsyncDataStore, AsyncSQLiteDataStore, ComponentRecord, Entry
from adatastore.backends.memory import MemoryBackend
from adatastore.errors import ConfigurationError
from adatastore.serializers import Buffer

pytestmark = pytest.mark.anyio


class AsyncioOnlyBackend(MemoryBackend):
    """Stands for a back-end built on an asyncio-only library (Django's ORM)."""

    requires_asyncio = True

    async def write(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        import asyncio

        asyncio.get_running_loop()  # what such a library does first
        await super().write(key, attribute_name, record, component)

    async def entries(self) -> list[Entry]:
        return await super().entries()


class AsyncioOnlyStore(AsyncDataStore):
    def __init__(self) -> None:
        super().__init__(AsyncioOnlyBackend())


async def test_asyncio_only_backend_says_so_under_trio(anyio_backend: str) -> None:
    store = AsyncioOnlyStore()
    c = SimpleComponent({"a": 1})
    if anyio_backend == "trio":
        with pytest.raises(ConfigurationError, match="asyncio only") as caught:
            await store.store(c, "x", 1)
        assert "AsyncioOnlyStore" in str(caught.value)
        with pytest.raises(ConfigurationError, match="asyncio only"):
            await store.retrieve(c, "x")
    else:
        await store.store(c, "x", 1)
        assert await store.retrieve(c, "x") == 1


async def test_sqlite_runs_on_asyncio_and_trio(anyio_backend: str, tmp_path: Path) -> None:
    """Its connections live in threads of their own, awaited on whichever loop runs."""
    async with AsyncSQLiteDataStore(tmp_path / "x.db") as store:
        await store.store(SimpleComponent({}), "x", b"v" * 200_000)  # a payload file too
        assert await store.retrieve(SimpleComponent({}), "x") == b"v" * 200_000
        await store.store_many([(SimpleComponent({"n": n}), "x", n) for n in range(150)])
        assert await store.retrieve_many([(SimpleComponent({"n": 7}), "x")]) == [7]
