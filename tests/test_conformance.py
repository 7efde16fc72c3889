"""The behaviour every back-end must have. Parametrised over back-ends and event loops."""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from components import OtherComponent, PlainComponent, SimpleComponent
from helpers import StoreFactory

from adatastore import (
    AsyncDataStore,
    AsyncShelveDataStore,
    AsyncSQLiteDataStore,
    JSONSerializer,
    keygenerators,
)
from adatastore.errors import (
    ComponentError,
    ConfigurationError,
    InvalidKeyError,
    InvalidNameError,
    SerializationError,
    StoreClosedError,
    UnhashableParameterError,
)

pytestmark = pytest.mark.anyio


def component(**params: Any) -> SimpleComponent:
    return SimpleComponent(params or {"a": 1, "b": {"c": 2.5}})


async def test_store_then_retrieve(store: AsyncDataStore) -> None:
    c = component()
    await store.store(c, "spikes", [1, 2, 3])
    assert await store.retrieve(c, "spikes") == [1, 2, 3]


async def test_missing_gives_none_or_default(store: AsyncDataStore) -> None:
    c = component()
    assert await store.retrieve(c, "spikes") is None
    sentinel = object()
    assert await store.retrieve(c, "spikes", default=sentinel) is sentinel
    assert not await store.contains(c, "spikes")


async def test_stored_none_is_not_the_default(store: AsyncDataStore) -> None:
    c = component()
    await store.store(c, "nothing", None)
    assert await store.contains(c, "nothing")
    assert await store.retrieve(c, "nothing", default="missing") is None


async def test_overwrite_replaces(store: AsyncDataStore) -> None:
    c = component()
    await store.store(c, "x", "old")
    await store.store(c, "x", "new")
    assert await store.retrieve(c, "x") == "new"
    assert len(await store.list_contents()) == 1


async def test_attributes_are_independent(store: AsyncDataStore) -> None:
    c = component()
    await store.store(c, "x", 1)
    await store.store(c, "y", 2)
    assert (await store.retrieve(c, "x"), await store.retrieve(c, "y")) == (1, 2)


async def test_insertion_order_gives_the_same_entry(store: AsyncDataStore) -> None:
    first = SimpleComponent({"a": 1, "b": {"c": 2, "d": 3}})
    second = SimpleComponent({"b": {"d": 3, "c": 2}, "a": 1})
    await store.store(first, "x", "value")
    assert await store.retrieve(second, "x") == "value"


@pytest.mark.parametrize(
    "other",
    [
        SimpleComponent({"a": 2, "b": {"c": 2.5}}),  # a parameter value
        SimpleComponent({"a": 1.0, "b": {"c": 2.5}}),  # its type
        SimpleComponent({"a": True, "b": {"c": 2.5}}),
        SimpleComponent({"a": "1", "b": {"c": 2.5}}),
        SimpleComponent({"A": 1, "b": {"c": 2.5}}),  # a name
        SimpleComponent({"a": 1, "b": {"c": 2.5}}, version="2"),  # the version
        OtherComponent({"a": 1, "b": {"c": 2.5}}),  # the type
        SimpleComponent({"a": 1, "b": {"c": 2.5}}, input=SimpleComponent({"i": 1})),  # input
    ],
    ids=["value", "float", "bool", "str", "name", "version", "type", "input"],
)
async def test_different_identity_never_shares_an_entry(
    store: AsyncDataStore, other: SimpleComponent
) -> None:
    await store.store(component(), "x", "mine")
    assert await store.retrieve(other, "x") is None
    await store.store(other, "x", "theirs")
    assert await store.retrieve(component(), "x") == "mine"


async def test_input_parameters_are_part_of_the_key(store: AsyncDataStore) -> None:
    up1, up2 = SimpleComponent({"rate": 1}), SimpleComponent({"rate": 2})
    down1, down2 = SimpleComponent({"n": 1}, input=up1), SimpleComponent({"n": 1}, input=up2)
    await store.store(down1, "x", 1)
    await store.store(down2, "x", 2)
    assert await store.retrieve(down1, "x") == 1
    assert await store.retrieve(down2, "x") == 2


async def test_list_of_inputs_and_shared_sub_input(store: AsyncDataStore) -> None:
    shared = SimpleComponent({"seed": 7})
    left = SimpleComponent({"side": "l"}, input=shared)
    right = SimpleComponent({"side": "r"}, input=shared)
    join = SimpleComponent({"op": "sum"}, input=[left, right])
    swapped = SimpleComponent({"op": "sum"}, input=[right, left])
    await store.store(join, "x", "lr")
    assert await store.retrieve(join, "x") == "lr"
    assert await store.retrieve(swapped, "x") is None


async def test_plain_dict_parameters(store: AsyncDataStore) -> None:
    await store.store(PlainComponent({"a": [1, 2], "b": {"c": None}}), "x", 1)
    assert await store.retrieve(PlainComponent({"b": {"c": None}, "a": [1, 2]}), "x") == 1


async def test_delete_one_and_all(store: AsyncDataStore) -> None:
    c, other = component(), component(z=1)
    for name in ("x", "y"):
        await store.store(c, name, name)
    await store.store(other, "x", "keep")
    assert await store.delete(c, "x") == 1
    assert await store.delete(c, "x") == 0
    assert await store.retrieve(c, "x") is None
    assert await store.retrieve(c, "y") == "y"
    assert await store.delete(c) == 1
    assert await store.retrieve(c, "y") is None
    assert await store.retrieve(other, "x") == "keep"
    assert await store.delete(component(q=1)) == 0


async def test_list_contents_describes_entries(store: AsyncDataStore) -> None:
    assert await store.list_contents() == []
    c = SimpleComponent({"a": 1}, version="7")
    await store.store(c, "spikes", list(range(100)))
    await store.store(c, "rates", 1.5)
    entries = await store.list_contents()
    assert [e.attribute_name for e in entries] == ["rates", "spikes"]
    for entry in entries:
        assert entry.key == store.key_of(c)
        assert entry.full_type == "components.SimpleComponent"
        assert entry.version == "7"
        assert entry.size > 0
        assert entry.stored_at.tzinfo is not None
    assert entries[1].size > entries[0].size


async def test_concurrent_stores_and_retrieves(store: AsyncDataStore) -> None:
    components = [component(i=i) for i in range(100)]

    async def store_one(i: int) -> None:
        await store.store(components[i], "value", {"i": i, "data": list(range(i))})

    results: dict[int, Any] = {}

    async def retrieve_one(i: int) -> None:
        results[i] = await store.retrieve(components[i], "value")

    async with anyio.create_task_group() as group:
        for i in range(100):
            group.start_soon(store_one, i)
    async with anyio.create_task_group() as group:
        for i in range(100):
            group.start_soon(retrieve_one, i)
    assert results == {i: {"i": i, "data": list(range(i))} for i in range(100)}
    assert len(await store.list_contents()) == 100


async def test_concurrent_mixed_operations_in_one_task_group(store: AsyncDataStore) -> None:
    """100 tasks in one group, each storing, retrieving, overwriting and checking its own."""
    failures: list[int] = []

    async def work(i: int) -> None:
        c = component(mixed=i)
        await store.store(c, "v", i)
        first = await store.retrieve(c, "v")
        await store.store(c, "v", -i)
        if (first, await store.retrieve(c, "v"), await store.contains(c, "v")) != (i, -i, True):
            failures.append(i)

    async with anyio.create_task_group() as group:
        for i in range(100):
            group.start_soon(work, i)
    assert failures == []
    assert len(await store.list_contents()) == 100


async def test_numpy_array_round_trip_is_exact_and_writable(store: AsyncDataStore) -> None:
    c = component()
    array = np.random.default_rng(1).standard_normal((300, 700))
    await store.store(c, "array", {"a": array, "f": np.asfortranarray(array[:, :5])})
    back = await store.retrieve(c, "array")
    assert back["a"].dtype == array.dtype
    np.testing.assert_array_equal(back["a"], array)
    np.testing.assert_array_equal(back["f"], array[:, :5])
    assert back["a"].flags.writeable
    back["a"][0, 0] = 42.0  # the caller owns what it got back
    again = await store.retrieve(c, "array")
    assert again["a"][0, 0] == array[0, 0]


async def test_floats_are_exact(store: AsyncDataStore) -> None:
    c = component()
    values = [0.1, 1e-300, math.pi, -0.0, math.inf]
    await store.store(c, "x", values)
    back = await store.retrieve(c, "x")
    assert [v.hex() for v in back] == [v.hex() for v in values]


async def test_json_serializer(make_store: StoreFactory) -> None:
    async with make_store(serializer=JSONSerializer()) as store:
        c = component()
        await store.store(c, "x", {"a": [1, 2.5, None, "s"]})
        assert await store.retrieve(c, "x") == {"a": [1, 2.5, None, "s"]}
        with pytest.raises(SerializationError):
            await store.store(c, "y", {1, 2})
        assert not await store.contains(c, "y")


async def test_classic_key_generators(make_store: StoreFactory) -> None:
    for generator in (keygenerators.hash_pickle, keygenerators.join_with_underscores):
        async with make_store(key_generator=generator) as store:
            upstream = SimpleComponent({"rate": 5.0})
            c = SimpleComponent({"a": 1, "b": {"c": "x y/z"}}, input=upstream)
            await store.store(c, "x", generator.__name__)
            assert await store.retrieve(c, "x") == generator.__name__
            assert await store.retrieve(SimpleComponent({"a": 1}, input=upstream), "x") is None
            (entry,) = await store.list_contents()
            assert entry.key == generator(c)


async def test_closed_store_refuses(make_store: StoreFactory) -> None:
    store = make_store()
    await store.store(component(), "x", 1)
    await store.aclose()
    await store.aclose()  # harmless
    with pytest.raises(StoreClosedError):
        await store.retrieve(component(), "x")
    with pytest.raises(StoreClosedError):
        await store.store(component(), "x", 2)


# -- bad input: a named error, and the store unchanged ---------------------------------------


class _Missing:
    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)


_OPEN_FILE = open(os.devnull)  # noqa: SIM115 - a parameter that is an open file


def _cyclic() -> SimpleComponent:
    a = SimpleComponent({"a": 1})
    b = SimpleComponent({"b": 1}, input=a)
    a.input = b
    return a


BAD_CALLS: list[tuple[str, Any, Any, type[Exception]]] = [
    ("no parameters", _Missing(input=None, version=1), "x", ComponentError),
    ("no input", _Missing(parameters={}, version=1), "x", ComponentError),
    ("no version", _Missing(parameters={}, input=None), "x", ComponentError),
    (
        "parameters not a mapping",
        _Missing(parameters=[1], input=None, version=1),
        "x",
        ComponentError,
    ),
    ("cyclic inputs", _cyclic(), "x", ComponentError),
    ("input not a component", SimpleComponent({}, input=42), "x", ComponentError),
    ("lambda parameter", PlainComponent({"f": lambda: 1}), "x", UnhashableParameterError),
    (
        "generator parameter",
        PlainComponent({"g": (i for i in range(3))}),
        "x",
        UnhashableParameterError,
    ),
    (
        "open file parameter",
        PlainComponent({"f": _OPEN_FILE}),
        "x",
        UnhashableParameterError,
    ),
    ("NaN parameter", PlainComponent({"a": {"b": math.nan}}), "x", UnhashableParameterError),
    ("empty name", component(), "", InvalidNameError),
    ("NUL in name", component(), "a\0b", InvalidNameError),
    ("newline in name", component(), "a\nb", InvalidNameError),
    ("surrogate in name", component(), "a\udc80", InvalidNameError),
    ("too long name", component(), "n" * 256, InvalidNameError),
    ("name not a str", component(), b"x", InvalidNameError),
    ("slash in name", component(), "a/b", InvalidNameError),
    ("parent in name", component(), "../../etc/passwd", InvalidNameError),
    ("dots in name", component(), "..", InvalidNameError),
    ("dot name", component(), ".", InvalidNameError),
    ("backslash in name", component(), "..\\win", InvalidNameError),
    ("absolute name", component(), "/etc/passwd", InvalidNameError),
]


async def _snapshot(store: AsyncDataStore) -> Any:
    entries = await store.list_contents()
    files: dict[str, bytes] = {}
    if isinstance(store, AsyncShelveDataStore):
        for path in sorted(Path(store.root_dir).rglob("*")):
            if path.is_file():
                files[str(path)] = path.read_bytes()
    rows: list[Any] = []
    if isinstance(store, AsyncSQLiteDataStore):
        with contextlib.closing(sqlite3.connect(store.path)) as db:
            rows.extend(
                sorted(db.execute(f"SELECT * FROM {table}").fetchall())
                for table in ("components", "entries", "garbage")
            )
    if type(store).__name__ == "AsyncDjangoORMDataStore":
        rows.extend(await _django_rows(store))
    return entries, files, rows


async def _django_rows(store: AsyncDataStore) -> list[Any]:
    """Every row of the Django back-end's tables, payloads as bytes."""
    from asgiref.sync import sync_to_async

    from adatastore.backends.django import models

    def dump() -> list[Any]:
        tables = []
        for model in (
            models.ComponentType,
            models.ComponentState,
            models.ComponentInput,
            models.DataItem,
        ):
            rows = model.objects.using(store.alias).order_by("pk").values_list()  # type: ignore[attr-defined]
            tables.append(
                [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]
            )
        return tables

    return list(await sync_to_async(dump)())


@pytest.mark.parametrize(
    ("what", "bad_component", "name", "error"), BAD_CALLS, ids=[row[0] for row in BAD_CALLS]
)
async def test_bad_input_is_refused_and_changes_nothing(
    store: AsyncDataStore, what: str, bad_component: Any, name: Any, error: type[Exception]
) -> None:
    await store.store(component(), "existing", [1, 2])
    before = await _snapshot(store)
    with pytest.raises(error) as caught:
        await store.store(bad_component, name, "data")
    message = str(caught.value)
    assert message
    with pytest.raises(error):
        await store.retrieve(bad_component, name)
    assert await _snapshot(store) == before
    assert await store.retrieve(component(), "existing") == [1, 2]


async def test_missing_attribute_error_names_attribute_and_type(store: AsyncDataStore) -> None:
    with pytest.raises(ComponentError, match=r"'version'.*") as caught:
        await store.store(_Missing(parameters={}, input=None), "x", 1)
    assert "_Missing" in str(caught.value)


async def test_cycle_error_lists_the_types(store: AsyncDataStore) -> None:
    with pytest.raises(ComponentError, match="cycle") as caught:
        await store.retrieve(_cyclic(), "x")
    assert str(caught.value).count("components.SimpleComponent") == 3


async def test_unhashable_error_names_the_path(store: AsyncDataStore) -> None:
    bad = PlainComponent({"net": {"layers": [1, 2, object()]}})
    with pytest.raises(UnhashableParameterError) as caught:
        await store.store(bad, "x", 1)
    assert caught.value.path == "net.layers[2]"
    assert isinstance(caught.value, TypeError)


async def test_unpicklable_data_is_refused_and_changes_nothing(store: AsyncDataStore) -> None:
    c = component()
    await store.store(c, "x", "old")
    before = await _snapshot(store)
    with pytest.raises(SerializationError) as caught:
        await store.store(c, "x", lambda: 1)
    assert caught.value.__cause__ is not None
    assert await _snapshot(store) == before
    assert await store.retrieve(c, "x") == "old"


@pytest.mark.parametrize("returned", [42, b"key", "", None, "a\0b"])
async def test_key_generator_must_return_a_string(make_store: StoreFactory, returned: Any) -> None:
    async with make_store(key_generator=lambda component: returned) as store:
        with pytest.raises(InvalidKeyError):
            await store.store(component(), "x", 1)
        assert await store.list_contents() == []


async def test_bad_constructor_arguments(make_store: StoreFactory) -> None:
    with pytest.raises(ConfigurationError, match="key_generator"):
        make_store(key_generator="not callable")
    with pytest.raises(ConfigurationError, match="serializer"):
        make_store(serializer=object())


# -- bulk methods -----------------------------------------------------------------------------


async def test_store_many_and_retrieve_many(store: AsyncDataStore) -> None:
    big = np.arange(40_000, dtype=np.float64)  # beyond SQLite's in-row limit
    items = [(component(i=i), "v", {"i": i}) for i in range(30)] + [(component(i=99), "big", big)]
    await store.store_many(items)
    requests = [(c, name) for c, name, _ in items] + [(component(i=-1), "v"), (component(i=3), "v")]
    values = await store.retrieve_many(requests, default="none")
    assert values[:30] == [{"i": i} for i in range(30)]
    np.testing.assert_array_equal(values[30], big)
    assert values[31:] == ["none", {"i": 3}]
    assert len(await store.list_contents()) == 31
    # overwriting in bulk replaces, and counts
    store.stats.reset()
    await store.store_many([(component(i=i), "v", -i) for i in range(5)])
    assert await store.retrieve_many([(component(i=i), "v") for i in range(5)]) == [
        0,
        -1,
        -2,
        -3,
        -4,
    ]
    assert (store.stats.stores, store.stats.hits) == (5, 5)


async def test_store_many_with_one_bad_item_stores_nothing(store: AsyncDataStore) -> None:
    before = await _snapshot(store)
    with pytest.raises(SerializationError):
        await store.store_many([(component(i=1), "v", 1), (component(i=2), "v", lambda: 0)])
    with pytest.raises(InvalidNameError):
        await store.store_many([(component(i=1), "v", 1), (component(i=2), "a/b", 2)])
    assert await _snapshot(store) == before
