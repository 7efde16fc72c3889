"""Bad entries recompute (issue 19): `get_or_compute`, `warm` and ``@cached`` treat a
damaged entry, a value that cannot be unpickled and a wrongly signed record as a miss —
they compute again, overwrite, log a warning and count it — unless the store says
``on_bad_entry="raise"``. `retrieve` keeps raising. Every back-end of the conformance
suite; records are damaged through the back-end itself (its own `write`), as a disk or
another program would leave them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from components import PlainComponent
from helpers import StoreFactory

from adatastore import AsyncDataStore, cached
from adatastore.errors import CorruptEntryError, IntegrityError, UnreadableValueError

pytestmark = pytest.mark.anyio

KINDS = ["flip", "truncate", "garbage", "unreadable", "unsigned"]
"""How an entry is bad: a flipped byte, cut short, not a record, a class that is gone, a
record without the store's signature."""

EXPECTED_ERROR: dict[str, type[Exception]] = {
    "flip": CorruptEntryError,
    "truncate": CorruptEntryError,
    "garbage": CorruptEntryError,
    "unreadable": UnreadableValueError,
    "unsigned": IntegrityError,
}

KEY = b"k" * 32


class Vanishing:
    """An instance of a class whose module is gone when it is read back."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


MODULE = "adatastore_test_vanishing"


def store_unreadable() -> Iterator[None]:
    """While it runs, `Vanishing` lives in a module of its own; afterwards that module
    is gone (as after a refactor that moved the class): its instances cannot be read."""
    module = types.ModuleType(MODULE)
    module.Vanishing = Vanishing  # type: ignore[attr-defined]
    Vanishing.__module__ = MODULE
    sys.modules[MODULE] = module
    try:
        yield
    finally:
        del sys.modules[MODULE]
        Vanishing.__module__ = __name__


def _mangle(record: bytes, how: str) -> bytes:
    if how == "flip":
        damaged = bytearray(record)
        damaged[len(damaged) * 3 // 4] ^= 0x40
        return bytes(damaged)
    if how == "truncate":
        return record[: len(record) // 2]
    return b"garbage" * 10


async def make_bad(
    store: AsyncDataStore,
    make_store: StoreFactory,
    component: PlainComponent,
    name: str,
    how: str,
) -> None:
    """Make the stored entry (component, name) bad in the way `how` says."""
    key, record = store._parts.context.identity.keyed(component)
    backend = store.backend
    if how == "unreadable":
        with contextlib.contextmanager(store_unreadable)():
            await store.store(component, name, Vanishing(b"x" * 100))
        return
    if how == "unsigned":  # the same value, written by a store without the key
        async with make_store() as unsigned:
            await unsigned.store(component, name, "planted")
            data = await unsigned.backend.read(key, name)
    else:
        data = await backend.read(key, name)
    assert data is not None
    planted = bytes(data) if how == "unsigned" else _mangle(bytes(data), how)
    await backend.write(key, name, [planted], record)


def component(n: int) -> PlainComponent:
    return PlainComponent({"n": n})


@pytest.mark.parametrize("how", KINDS)
async def test_get_or_compute_recomputes_a_bad_entry_once(
    make_store: StoreFactory,
    how: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with make_store(signing_key=KEY) as store:
        item = component(1)
        await store.store(item, "value", b"first" * 1000)
        await make_bad(store, make_store, item, "value", how)
        with pytest.raises(EXPECTED_ERROR[how]):  # retrieve cannot recompute: it raises
            await store.retrieve(item, "value")
        calls = []

        def compute() -> bytes:
            calls.append(1)
            return b"second"

        with caplog.at_level(logging.WARNING, logger="adatastore"):
            assert await store.get_or_compute(item, "value", compute) == b"second"
        assert calls == [1]
        assert store.stats.recomputed_bad == 1
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "bad" in warnings[0].getMessage()
        assert store.key_of(item) in warnings[0].getMessage()
        # overwritten: read back plainly, and a second call is a hit
        assert await store.retrieve(item, "value") == b"second"
        assert await store.get_or_compute(item, "value", compute) == b"second"
        assert calls == [1]
        assert store.stats.recomputed_bad == 1


@pytest.mark.parametrize("how", KINDS)
async def test_on_bad_entry_raise_keeps_raising(make_store: StoreFactory, how: str) -> None:
    async with make_store(signing_key=KEY, on_bad_entry="raise") as store:
        item = component(2)
        await store.store(item, "value", b"first")
        await make_bad(store, make_store, item, "value", how)
        calls = []
        with pytest.raises(EXPECTED_ERROR[how]):
            await store.get_or_compute(item, "value", lambda: calls.append(1))
        assert calls == []
        assert store.stats.recomputed_bad == 0
        report = await store.warm([item], "value", lambda c: calls.append(1))
        assert calls == []
        assert [type(error) for _, error in report.failed] == [EXPECTED_ERROR[how]]
        with pytest.raises(EXPECTED_ERROR[how]):  # left as it was
            await store.retrieve(item, "value")


@pytest.mark.parametrize("how", ["flip", "unreadable", "unsigned"])
async def test_warm_recomputes_the_bad_entries_it_finds(make_store: StoreFactory, how: str) -> None:
    async with make_store(signing_key=KEY) as store:
        items = [component(n) for n in range(6)]
        await store.store_many([(item, "value", n * 10) for n, item in enumerate(items)])
        for item in items[1:3]:
            await make_bad(store, make_store, item, "value", how)
        computed: list[int] = []

        def compute(item: PlainComponent) -> int:
            computed.append(item.parameters["n"])
            return int(item.parameters["n"]) * 100

        report = await store.warm(items, "value", compute)
        assert sorted(computed) == [1, 2]
        assert (report.computed, report.already_stored, report.failed) == (2, 4, ())
        assert store.stats.recomputed_bad == 2
        values = await store.retrieve_many([(item, "value") for item in items])
        assert values == [0, 100, 200, 30, 40, 50]
        # check_stored=False trusts existence, as warm did before: nothing computed
        await make_bad(store, make_store, items[4], "value", how)
        report = await store.warm(items, "value", compute, check_stored=False)
        assert (report.computed, report.already_stored) == (0, 6)


async def test_cached_methods_recompute_bad_entries(make_store: StoreFactory) -> None:
    async with make_store() as store:
        runs: list[int] = []

        class Model(PlainComponent):
            @cached(store=store)
            async def rates(self) -> Any:
                runs.append(1)
                return [self.parameters["n"]] * 3

        model = Model({"n": 4})
        assert await model.rates() == [4, 4, 4]
        await make_bad(store, make_store, model, "rates", "unreadable")
        assert await model.rates() == [4, 4, 4]
        assert len(runs) == 2
        assert store.stats.recomputed_bad == 1


@pytest.mark.parametrize("where", ["workers store", "caller stores"])
async def test_warm_on_an_executor_recomputes_bad_entries(
    make_store: StoreFactory, where: str
) -> None:
    if make_store.backend == "memory" and where == "workers store":  # type: ignore[attr-defined]
        pytest.skip("a memory store is reachable from this process only")
    async with make_store() as store:
        items = [component(n) for n in range(5)]
        await store.store_many([(item, "value", -1) for item in items])
        await make_bad(store, make_store, items[3], "value", "truncate")
        with concurrent.futures.ThreadPoolExecutor(2) as executor:
            report = await store.warm(
                items,
                "value",
                square,
                executor=executor,
                store_in_workers=where == "workers store",
            )
        assert (report.computed, report.already_stored, report.failed) == (1, 4, ())
        assert store.stats.recomputed_bad == 1
        assert await store.retrieve(items[3], "value") == 9


def square(item: PlainComponent) -> int:
    return int(item.parameters["n"]) ** 2
