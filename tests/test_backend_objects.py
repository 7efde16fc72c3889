"""Back-ends are objects the store holds: the facade shows the user API only, a back-end
written the 0.2 way (a subclass overriding ``*_raw``) still works with a
`DeprecationWarning`, and the capability flags combine."""

from __future__ import annotations

import dbm.dumb
import os
import shutil
import threading
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from components import SimpleComponent

from adatastore import (
    AsyncDataStore,
    AsyncMemoryDataStore,
    AsyncShelveDataStore,
    AsyncSQLiteDataStore,
    ComponentRecord,
    Entry,
    SyncDataStore,
    keygenerators,
)
from adatastore.backends.memory import MemoryBackend
from adatastore.errors import ConfigurationError


def test_the_facade_shows_the_user_api_only() -> None:
    public = {name for name in dir(AsyncDataStore) if not name.startswith("_")}
    assert not {name for name in public if name.endswith(("_raw", "_blocking"))}
    assert not {name for name in public if name.startswith(("read", "write", "blocking_"))}
    assert {"store", "retrieve", "warm", "get_or_compute", "explain"} <= public
    store = AsyncMemoryDataStore()
    assert not hasattr(store, "write_raw")
    assert isinstance(store.backend, MemoryBackend)


def test_a_store_needs_a_backend() -> None:
    with pytest.raises(ConfigurationError, match=r"needs an adatastore\.backend\.Backend"):
        AsyncDataStore({})  # type: ignore[arg-type]


def define_legacy_store() -> Any:
    """The complete custom back-end of adatastore 0.2's docs (docs/backends.rst), as a
    user wrote it: a subclass overriding the ``*_raw`` hooks, on ``dbm.dumb``."""

    class AsyncDbmDataStore(AsyncDataStore):
        def __init__(self, path: str, key_generator: Any = None, serializer: Any = None):
            super().__init__(key_generator, serializer)
            self.path = path
            self.lock = threading.Lock()  # dbm.dumb is not thread-safe

        async def open_raw(self) -> None:
            self.db: Any = await anyio.to_thread.run_sync(dbm.dumb.open, self.path, "c")

        def _locked(self, function: Callable[..., Any], *args: Any) -> Any:
            with self.lock:
                return function(*args)

        async def _run(self, function: Callable[..., Any], *args: Any) -> Any:
            return await anyio.to_thread.run_sync(self._locked, function, *args)

        async def write_raw(
            self, key: str, attribute_name: str, record: Any, component: ComponentRecord
        ) -> None:
            def write() -> None:
                if f"c\0{key}" not in self.db:
                    self.db[f"c\0{key}"] = component.to_json()
                self.db[f"r\0{key}\0{attribute_name}"] = b"".join(record)
                self.db[f"t\0{key}\0{attribute_name}"] = datetime.now(UTC).isoformat()

            await self._run(write)

        async def read_raw(self, key: str, attribute_name: str) -> Any:
            return await self._run(self.db.get, f"r\0{key}\0{attribute_name}")

        async def contains_raw(self, key: str, attribute_name: str) -> Any:
            return await self._run(self.db.__contains__, f"r\0{key}\0{attribute_name}")

        async def delete_raw(self, key: str, attribute_name: str | None) -> Any:
            def delete() -> int:
                prefix = f"r\0{key}\0".encode()
                names = [k for k in self.db.keys() if k.startswith(prefix)]  # noqa: SIM118
                if attribute_name is not None:
                    names = [k for k in names if k == prefix + attribute_name.encode()]
                for name in names:
                    del self.db[name]
                    del self.db[b"t" + name[1:]]
                return len(names)

            return await self._run(delete)

        async def list_raw(self) -> Any:
            def entries() -> list[Entry]:
                found = []
                for name in self.db.keys():  # noqa: SIM118
                    if name.startswith(b"r\0"):
                        _, key, attribute = name.decode().split("\0")
                        component = ComponentRecord.from_json(self.db[f"c\0{key}"])
                        stored = datetime.fromisoformat(self.db[b"t" + name[1:]].decode())
                        found.append(
                            Entry(
                                key,
                                attribute,
                                component.full_type,
                                component.version,
                                len(self.db[name]),
                                stored,
                            )
                        )
                return found

            return await self._run(entries)

        async def close_raw(self) -> None:
            await self._run(self.db.close)

    return AsyncDbmDataStore


def test_a_legacy_subclass_warns_when_defined() -> None:
    with pytest.warns(DeprecationWarning, match=r"AsyncDbmDataStore .* 0\.2 way") as caught:
        define_legacy_store()
    assert len(caught) == 1
    assert caught[0].filename == __file__, "the warning points at the user's class"


@pytest.mark.anyio
async def test_a_legacy_subclass_works_awaited(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy = define_legacy_store()
    store = legacy(str(tmp_path / "db"), keygenerators.join_with_underscores)
    assert store.key_generator is keygenerators.join_with_underscores
    c = SimpleComponent({"n": 1})
    async with store:
        await store.store(c, "x", {"v": 42})
        assert await store.retrieve(c, "x") == {"v": 42}
        assert await store.contains(c, "x")
        assert [(e.attribute_name, e.key) for e in await store.list_contents()] == [
            ("x", store.key_of(c))
        ]
        assert (await store.explain(c, "x")).hit
        assert await store.delete(c) == 1
        assert await store.retrieve(c, "x") is None
        assert (store.stats.hits, store.stats.misses) == (1, 1)


def test_a_legacy_subclass_works_blocking(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy = define_legacy_store()
    with SyncDataStore(legacy(str(tmp_path / "db"))) as store:
        store.store(SimpleComponent({"n": 1}), "x", [1, 2])
        assert store.retrieve(SimpleComponent({"n": 1}), "x") == [1, 2]
        assert store.retrieve_many([(SimpleComponent({"n": 2}), "x")]) == [None]
        assert store.warm([SimpleComponent({"n": 3})], "x", lambda c: 3).computed == 1
    assert os.path.exists(tmp_path / "db.dat")


class AsyncioLibraryBackend(MemoryBackend):
    """Blocking I/O for the blocking API, an asyncio-only library for the awaited one."""

    requires_asyncio = True
    supports_blocking = True


def test_a_blocking_class_over_an_asyncio_only_backend_needs_no_loop() -> None:
    """0.2.0 applied the awaited path's loop check to the blocking path: such a store
    failed at construction, asking whether it ran under trio."""
    with SyncDataStore(AsyncDataStore(AsyncioLibraryBackend())) as store:
        c = SimpleComponent({"a": 1})
        store.store(c, "x", 1)
        assert store.retrieve(c, "x") == 1
        assert store.contains(c, "x")
        assert [e.attribute_name for e in store.list_contents()] == ["x"]  # via the portal
        assert store.delete(c) == 1


V0_2 = Path(__file__).parent / "data" / "v0.2"  # written by 0.2.0: make_v0_2_stores.py


def open_v0_2(kind: str, where: Path) -> AsyncDataStore:
    """A copy of the 0.2.0 store of one back-end, opened with this version."""
    shutil.copytree(V0_2, where)
    if kind == "files":
        return AsyncShelveDataStore(where / "files")
    if kind == "sqlite":
        return AsyncSQLiteDataStore(where / "sqlite.db")
    from adatastore import AsyncDjangoORMDataStore

    database = {"ENGINE": "sqlite3", "NAME": str(where / "django.db")}
    return AsyncDjangoORMDataStore(database, data_root_dir=where / "django-files")


UP = SimpleComponent({"seed": 3})
DOWN = SimpleComponent({"a": 1, "b": {"c": 2.5}}, input=UP, version="2")
WRITTEN_BY_0_2 = [
    (UP, "spikes", [1, 2, 3]),
    (DOWN, "rates", {"mean": 4.5}),
    (DOWN, "note", "text"),
    (SimpleComponent({"large": True}), "blob", bytes(range(256)) * 1024),
]


@pytest.mark.asyncio_only
@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["files", "sqlite", "django-sqlite"])
async def test_a_store_written_by_0_2_reads_and_writes_awaited(tmp_path: Path, kind: str) -> None:
    async with open_v0_2(kind, tmp_path / "copy") as store:
        for component, name, value in WRITTEN_BY_0_2:
            assert await store.retrieve(component, name) == value, name
        assert len(await store.list_contents()) == 4
        assert (await store.verify()).ok
        assert (await store.explain(DOWN, "rates")).hit
        await store.store(DOWN, "note", "replaced")
        assert await store.retrieve(DOWN, "note") == "replaced"
        assert await store.delete(UP) == 1
        assert len(await store.list_contents()) == 3


@pytest.mark.asyncio_only
@pytest.mark.anyio
async def test_an_older_standalone_django_store_is_migrated_even_opened_to_look(
    tmp_path: Path,
) -> None:
    """Tools open stores with ``create=False`` (the command line): an existing standalone
    Django store is still migrated forward (0003 adds the read-time column), not refused."""
    from adatastore import AsyncDjangoORMDataStore

    shutil.copytree(V0_2, tmp_path / "copy")
    database = {"ENGINE": "sqlite3", "NAME": str(tmp_path / "copy" / "django.db")}
    files = tmp_path / "copy" / "django-files"
    async with AsyncDjangoORMDataStore(database, data_root_dir=files, create=False) as store:
        assert len(await store.list_contents()) == 4
    async with AsyncDjangoORMDataStore(database, data_root_dir=files, max_entries=3) as store:
        await store.store(UP, "more", 1)
        assert len(await store.list_contents()) <= 3
        assert await store.retrieve(UP, "more") == 1


@pytest.mark.parametrize("kind", ["files", "sqlite", "django-sqlite"])
def test_a_store_written_by_0_2_reads_and_writes_blocking(tmp_path: Path, kind: str) -> None:
    with SyncDataStore(open_v0_2(kind, tmp_path / "copy")) as store:
        assert store.retrieve_many([(c, name) for c, name, _ in WRITTEN_BY_0_2]) == [
            value for _, _, value in WRITTEN_BY_0_2
        ]
        store.store(UP, "spikes", [4])
        assert store.retrieve(UP, "spikes") == [4]
        assert store.verify().ok


class CountingComponent:
    """A component that counts how often its inputs are asked for."""

    reads = 0
    version = "1"

    def __init__(self, n: int, input: object = None) -> None:
        self.parameters = {"n": n}
        self._input = input

    @property
    def input(self) -> object:
        CountingComponent.reads += 1
        return self._input


def test_a_store_walks_the_component_graph_once(tmp_path: Path) -> None:
    """The key and the component record (input keys included) come from one walk; 0.2.0
    walked it again for the record, once per input (48 reads of ``input`` here against
    25 for the key alone)."""
    chain = CountingComponent(0)
    for n in range(1, 6):
        chain = CountingComponent(n, chain)
    with SyncDataStore(AsyncSQLiteDataStore(tmp_path / "s.db")) as store:
        CountingComponent.reads = 0
        store.key_of(chain)
        one_walk = CountingComponent.reads
        CountingComponent.reads = 0
        store.store(chain, "x", 1)
        assert CountingComponent.reads <= one_walk + 2  # + the top's own, for its record
        CountingComponent.reads = 0
        assert store.retrieve(chain, "x") == 1
        assert CountingComponent.reads == one_walk
