"""The blocking API and the async API are one API: same methods, same keywords, and one
call of each logs the same lines and counts the same stats.

The blocking classes used to be hand-written twins, and drifted (a blocking retrieve
logged no hit or miss; `SyncDataStore.warm` took ``**options``). These tests keep them
equal: the signatures by `inspect`, the behaviour by running one script through each.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from components import SimpleComponent

from adatastore import (
    AsyncDataStore,
    AsyncMemoryDataStore,
    AsyncShelveDataStore,
    AsyncSQLiteDataStore,
    MemoryDataStore,
    ShelveDataStore,
    SQLiteDataStore,
    SyncDataStore,
)

# The async API's names for what the blocking API calls otherwise.
RENAMED = {"close": "aclose"}


def public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    return {
        name: member
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_every_blocking_method_has_the_async_signature() -> None:
    blocking = public_methods(SyncDataStore)
    awaited = public_methods(AsyncDataStore)
    assert set(blocking) - set(RENAMED) <= set(awaited), "a blocking method has no async twin"
    missing = set(awaited) - set(blocking) - set(RENAMED.values()) - {"open", "ctx"}
    assert not missing, f"async methods without a blocking twin: {sorted(missing)}"
    for name, method in blocking.items():
        twin = awaited[RENAMED.get(name, name)]
        ours, theirs = inspect.signature(method), inspect.signature(twin)
        assert ours.parameters == theirs.parameters, name
        assert ours.return_annotation == theirs.return_annotation, name
        assert inspect.iscoroutinefunction(method) is False, name


@pytest.mark.parametrize(
    "blocking_class",
    [SQLiteDataStore, ShelveDataStore, MemoryDataStore],
)
def test_named_blocking_classes_take_the_async_constructor_keywords(
    blocking_class: type[SyncDataStore[Any]],
) -> None:
    twin: type[AsyncDataStore] = {
        SQLiteDataStore: AsyncSQLiteDataStore,
        ShelveDataStore: AsyncShelveDataStore,
        MemoryDataStore: AsyncMemoryDataStore,
    }[blocking_class]
    ours = inspect.signature(blocking_class).parameters
    theirs = inspect.signature(twin).parameters
    assert list(ours) == list(theirs)
    for name in theirs:
        assert ours[name].default == theirs[name].default, name


def _square(component: Any) -> int:
    return int(component.parameters["n"]) ** 2


class _Script:
    """One call of each public method, through either API; what each call logged."""

    def __init__(self) -> None:
        self.a = SimpleComponent({"n": 1})
        self.b = SimpleComponent({"n": 2}, input=self.a)
        self.sweep = [SimpleComponent({"n": n}) for n in range(3, 6)]

    def calls(self) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
        return [
            ("store", (self.a, "x", [1, 2]), {}),
            ("retrieve", (self.a, "x"), {}),
            ("retrieve", (self.a, "nothing"), {}),
            ("contains", (self.a, "x"), {}),
            ("store_many", ([(self.b, "y", 3), (self.b, "z", 4)],), {}),
            ("retrieve_many", ([(self.b, "y"), (self.b, "nothing")],), {}),
            ("get_or_compute", (self.a, "c", lambda: 7), {"cross_process": False}),
            ("get_or_compute", (self.a, "c", lambda: 8), {"cross_process": False}),
            ("warm", (self.sweep, "sq", _square), {"threads": 2}),
            ("provenance", (self.a, "x"), {}),
            ("delete", (self.b,), {}),
            ("list_contents", (), {}),
        ]


def _summary(result: Any) -> Any:
    """What a call returned, without times and machine-specific details."""
    if isinstance(result, list) and result and hasattr(result[0], "attribute_name"):
        return [(e.key, e.attribute_name, e.full_type, e.version) for e in result]
    if hasattr(result, "computed"):  # WarmReport
        return (result.computed, result.already_stored, result.duplicates, result.failed)
    if hasattr(result, "stored_at"):  # Provenance
        return type(result).__name__
    return result


def _record(
    caplog: pytest.LogCaptureFixture, name: str, result: Any, stats: dict[str, float]
) -> tuple[str, list[tuple[str, str]], Any, dict[str, float]]:
    lines = [
        (r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("adatastore")
    ]
    caplog.clear()
    if name == "warm":  # concurrent: the same lines, in any order
        lines.sort()
    counts = {k: v for k, v in stats.items() if not k.endswith("_seconds")}
    return name, lines, _summary(result), counts


@pytest.mark.parametrize("backend", ["memory", "files", "sqlite", "django-sqlite"])
def test_one_call_of_each_logs_and_counts_the_same(
    tmp_path: Path, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    def make(where: str) -> AsyncDataStore:
        if backend == "memory":
            return AsyncMemoryDataStore()
        if backend == "files":
            return AsyncShelveDataStore(tmp_path / where)
        if backend == "sqlite":
            return AsyncSQLiteDataStore(tmp_path / f"{where}.db")
        from adatastore import AsyncDjangoORMDataStore

        return AsyncDjangoORMDataStore(
            {"ENGINE": "sqlite3", "NAME": str(tmp_path / f"{where}.db")},
            data_root_dir=tmp_path / f"{where}-files",
        )

    caplog.set_level(logging.DEBUG, logger="adatastore")
    script = _Script()

    async def awaited() -> list[Any]:
        seen = []
        async with make("async") as store:
            caplog.clear()
            for name, args, kwargs in script.calls():
                result = await getattr(store, name)(*args, **kwargs)
                seen.append(_record(caplog, name, result, store.stats.as_dict()))
        return seen

    through_async = asyncio.run(awaited())

    through_blocking = []
    with SyncDataStore(make("blocking")) as blocking:
        caplog.clear()
        for name, args, kwargs in script.calls():
            result = getattr(blocking, name)(*args, **kwargs)
            through_blocking.append(_record(caplog, name, result, blocking.stats.as_dict()))

    for ours, theirs in zip(through_blocking, through_async, strict=True):
        assert ours == theirs
    # and the script did log: a hit, a miss, a store and a compute at least
    messages = [message for _, lines, _, _ in through_async for _, message in lines]
    for word in ("hit:", "miss:", "stored", "computing"):
        assert any(m.startswith(word) for m in messages), word


def test_warm_options_are_named_once() -> None:
    """`warm`'s keywords are typed once (`WarmKeywords`, both facades' ``**options``) and
    held once (`WarmOptions`, passed down to the pipelines); the two list the same names
    with the same types."""
    import dataclasses
    import typing

    from adatastore._compute.warm_options import WarmKeywords, WarmOptions

    typed = typing.get_type_hints(WarmKeywords)
    held = {field.name: field.type for field in dataclasses.fields(WarmOptions)}
    assert set(typed) == set(held)
    hints = typing.get_type_hints(WarmOptions)
    assert all(hints[name] == typed[name] for name in typed)
    for facade in (AsyncDataStore, SyncDataStore):
        options = inspect.signature(facade.warm).parameters["options"]
        assert options.kind is inspect.Parameter.VAR_KEYWORD
        assert "WarmKeywords" in str(options.annotation)


def test_a_misspelt_warm_keyword_is_a_type_error_and_computes_nothing() -> None:
    computed: list[object] = []

    def compute(component: object) -> int:
        computed.append(component)
        return 1

    with MemoryDataStore() as store:
        with pytest.raises(TypeError, match="unexpected keyword argument 'concurency'"):
            store.warm([SimpleComponent({"a": 1})], "v", compute, concurency=2)  # type: ignore[call-arg]

        async def main() -> None:
            async with AsyncMemoryDataStore() as async_store:
                with pytest.raises(TypeError, match="'check_store'"):
                    await async_store.warm(
                        [SimpleComponent({"a": 1})], "v", compute, check_store=False
                    )  # type: ignore[call-arg]

        asyncio.run(main())
        assert store.warm([SimpleComponent({"a": 1})], "v", compute, concurrency=1).computed == 1
    assert len(computed) == 1
