"""Provenance of every entry, and `explain`: why was this a miss?"""

from __future__ import annotations

import getpass
import platform
import shutil
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from components import OtherComponent, SimpleComponent
from helpers import StoreFactory

import adatastore
from adatastore import AsyncSQLiteDataStore, MemoryDataStore
from adatastore.errors import InvalidNameError
from adatastore.provenance import Difference, diff_parameters

pytestmark = pytest.mark.anyio

NETWORK = {"cells": 100, "model": {"tau": 20.0, "threshold": -50.0}, "name": "v1"}


async def test_a_hit_says_when_and_where_it_was_stored(make_store: StoreFactory) -> None:
    async with make_store() as store:
        before = datetime.now(UTC) - timedelta(seconds=1)
        await store.store(SimpleComponent(NETWORK), "spikes", [1, 2, 3])

        async def simulate() -> list[int]:
            await anyio.sleep(0.05)
            return [4, 5]

        await store.get_or_compute(SimpleComponent({"other": 1}), "spikes", simulate)
        explained = await store.explain(SimpleComponent(NETWORK), "spikes")
        computed = await store.explain(SimpleComponent({"other": 1}), "spikes")
    assert explained.hit
    provenance = explained.provenance
    assert provenance is not None
    assert before <= provenance.stored_at <= datetime.now(UTC)
    assert provenance.host == socket.gethostname()
    assert provenance.user == getpass.getuser()
    assert provenance.python == platform.python_version()
    assert provenance.adatastore == adatastore.__version__
    assert provenance.compute_seconds is None  # stored directly: no computation known
    assert computed.provenance is not None
    assert computed.provenance.compute_seconds is not None
    assert computed.provenance.compute_seconds >= 0.05
    assert str(explained).startswith("hit: 'spikes' of components.SimpleComponent")


async def test_a_miss_names_the_changed_leaf_the_version_and_the_input(
    make_store: StoreFactory,
) -> None:
    seed = SimpleComponent({"seed": 3})
    async with make_store() as store:
        await store.store(seed, "noise", [0.5])
        await store.store(SimpleComponent(NETWORK, input=seed), "spikes", [1])
        await store.store(SimpleComponent({"unrelated": True}), "spikes", [2])
        await store.store(OtherComponent(NETWORK, input=seed), "spikes", [3])  # another type

        changed_leaf = {**NETWORK, "model": {"tau": 25.0, "threshold": -50.0}}
        leaf = await store.explain(SimpleComponent(changed_leaf, input=seed), "spikes")
        version = await store.explain(SimpleComponent(NETWORK, input=seed, version="2"), "spikes")
        other_seed = SimpleComponent({"seed": 4})
        upstream = await store.explain(SimpleComponent(NETWORK, input=other_seed), "spikes")
        wrong_name = await store.explain(SimpleComponent(NETWORK, input=seed), "rates")
        stored = await store.explain(SimpleComponent(NETWORK, input=seed), "spikes", limit=0)

    assert not leaf.hit
    closest = leaf.candidates[0]
    assert closest.attribute_names == ("spikes",)
    assert closest.differences == (Difference("parameters.model.tau", 25.0, 20.0),)
    assert "parameters.model.tau: asked 25.0, stored 20.0" in str(leaf)

    assert version.candidates[0].differences == (Difference("version", "2", "$Revision: 1 $"),)

    differences = upstream.candidates[0].differences
    assert [d.path for d in differences] == ["input[0]", "input[0].parameters.seed"]
    assert differences[1] == Difference("input[0].parameters.seed", 4, 3)

    assert not wrong_name.hit
    assert wrong_name.same_component_attributes == ("spikes",)
    assert "other attributes: 'spikes'" in str(wrong_name)
    assert stored.hit  # it is stored: limit only bounds the candidates of a miss


async def test_a_miss_with_nothing_of_that_type(make_store: StoreFactory) -> None:
    async with make_store() as store:
        await store.store(SimpleComponent({"a": 1}), "v", 1)
        explained = await store.explain(OtherComponent({"a": 1}), "v")
        with pytest.raises(InvalidNameError):
            await store.explain(SimpleComponent({"a": 1}), "")
    assert not explained.hit
    assert explained.candidates == ()
    assert "nothing of type components.OtherComponent is stored" in str(explained)


async def test_candidates_holding_the_attribute_come_first(make_store: StoreFactory) -> None:
    async with make_store() as store:
        await store.store(SimpleComponent({"a": 1, "b": 2}), "other", 0)  # 1 difference
        await store.store(SimpleComponent({"a": 5, "b": 6}), "v", 0)  # 2 differences
        explained = await store.explain(SimpleComponent({"a": 1, "b": 3}), "v", limit=2)
    assert [c.attribute_names for c in explained.candidates] == [("v",), ("other",)]
    assert [len(c.differences) for c in explained.candidates] == [2, 1]


def test_the_blocking_api_explains_too(tmp_path: Path) -> None:
    store = MemoryDataStore()
    store.store(SimpleComponent({"a": 1}), "v", 1)
    assert store.explain(SimpleComponent({"a": 1}), "v").hit
    missed = store.explain(SimpleComponent({"a": 2}), "v")
    assert missed.candidates[0].differences == (Difference("parameters.a", 2, 1),)


@pytest.mark.asyncio_only
async def test_entries_written_before_provenance_have_none(
    tmp_path: Path, anyio_backend: str
) -> None:
    data = Path(__file__).parent / "data"
    shutil.copy(data / "store-v1.db", tmp_path / "store-v1.db")
    shutil.copytree(data / "store-v1.db-payloads", tmp_path / "store-v1.db-payloads")
    async with AsyncSQLiteDataStore(tmp_path / "store-v1.db") as store:
        explained = await store.explain(SimpleComponent({"seed": 3}), "spikes")
    assert explained.hit
    assert explained.provenance is None
    assert "no provenance recorded" in str(explained)


def test_diff_parameters_compares_types_shapes_and_missing_keys() -> None:
    assert diff_parameters({"a": 1}, {"a": 1.0}) == [Difference("parameters.a", 1, 1.0)]
    assert diff_parameters({"a": [1, 2]}, {"a": [1, 3]}) == [Difference("parameters.a[1]", 2, 3)]
    assert [d.path for d in diff_parameters({"a": [1]}, {"a": [1, 2]})] == ["parameters.a"]
    (only_wanted, only_stored) = diff_parameters({"x": 1}, {"y": 2})
    assert (only_wanted.path, only_wanted.wanted, repr(only_wanted.stored)) == (
        "parameters.x",
        1,
        "<absent>",
    )
    assert (only_stored.path, repr(only_stored.wanted), only_stored.stored) == (
        "parameters.y",
        "<absent>",
        2,
    )
    assert diff_parameters({"a": {"b": None}}, {"a": {"b": None}}) == []


@pytest.mark.asyncio_only
async def test_provenance_is_read_without_the_payload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    from adatastore import AsyncShelveDataStore
    from adatastore._storage import fsio as _fsio

    def no_whole_reads(path: str) -> None:
        raise AssertionError(f"read the whole record {path}")

    big = bytes(300_000)  # SQLite keeps records of 128 KiB or more in files
    for store in (AsyncShelveDataStore(tmp_path / "f"), AsyncSQLiteDataStore(tmp_path / "s.db")):
        async with store:
            await store.store(SimpleComponent({"a": 1}), "big", big)
            await store.store(SimpleComponent({"a": 1}), "small", b"x")
            with monkeypatch.context() as patch:
                patch.setattr(_fsio, "read_file", no_whole_reads)
                for name in ("big", "small"):
                    explained = await store.explain(SimpleComponent({"a": 1}), name)
                    assert explained.hit
                    assert explained.provenance is not None
                    assert explained.provenance.host == socket.gethostname()


class Moved:
    """Stands for a component class moved to another module (same qualified name)."""

    version = "$Revision: 1 $"

    def __init__(self, parameters: dict[str, object]) -> None:
        self.parameters = parameters
        self.input = None


async def test_a_miss_points_at_the_same_class_in_another_module(
    make_store: StoreFactory,
) -> None:
    """After a class moved (or a script's class seen from a spawn worker under another
    module), the stored components of the old module are candidates, with the type shown
    as the difference."""
    old = type("Moved", (Moved,), {"__module__": "oldpackage.models"})
    async with make_store() as store:
        await store.store(old({"n": 1}), "spikes", [1])
        explained = await store.explain(Moved({"n": 1}), "spikes")
    assert not explained.hit
    (candidate,) = explained.candidates
    assert candidate.differences == (
        Difference("type", "test_explain.Moved", "oldpackage.models.Moved"),
    )
    assert "type: asked 'test_explain.Moved', stored 'oldpackage.models.Moved'" in str(explained)
