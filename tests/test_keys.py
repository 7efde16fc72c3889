"""Keys: canonical, injective on what matters, and loud about what they cannot encode."""

from __future__ import annotations

import datetime
import decimal
import enum
import fractions
import math
import uuid
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pytest
from components import OtherComponent, PlainComponent, SimpleComponent
from hypothesis import given, settings
from hypothesis import strategies as st
from parameters import ParameterSet

from adatastore import keygenerators
from adatastore.component import walk_inputs
from adatastore.errors import ComponentError, UnhashableParameterError
from adatastore.keygenerators import (
    canonical_hash,
    canonical_parameters,
    full_type,
    hash_pickle,
    join_with_underscores,
)

GENERATORS = [canonical_hash, hash_pickle, join_with_underscores]


def test_full_type_is_module_and_qualified_name() -> None:
    assert full_type(SimpleComponent({})) == "components.SimpleComponent"
    assert full_type(keygenerators) == "adatastore.keygenerators"


def test_canonical_hash_is_a_hex_digest() -> None:
    key = canonical_hash(SimpleComponent({"a": 1}))
    assert len(key) == 64
    int(key, 16)


def test_known_key_is_stable() -> None:
    """The key format is part of the on-disk format: changing it orphans every cache."""
    key = canonical_hash(PlainComponent({"b": [1, 2.5, "x"], "a": {"c": None}}, version="1.0"))
    assert canonical_parameters({"b": [1, 2.5, "x"], "a": {"c": None}}) == (
        "{2:s1:a{1:s1:cN}s1:b[3:i1;f0x1.4000000000000p+1;s1:x]}"
    )
    assert key == canonical_hash(
        PlainComponent({"a": {"c": None}, "b": [1, 2.5, "x"]}, version="1.0")
    )
    assert key == "5b715ee9cc33860ccc053776052b31eec3cdd37032a0c223bde2b8248b3b2cf5"


@pytest.mark.parametrize(
    ("one", "two"),
    [
        (1, 1.0),
        (1, True),
        (1, "1"),
        (0, False),
        (0.0, -0.0),
        (None, "None"),
        ([1, 2], (1, 2)),
        ([1, 2], [2, 1]),
        ({"a": 1}, {"a": 1, "b": None}),
        ("ab", ["a", "b"]),
        (b"x", "x"),
        (np.float64(1.0), 1.0),
        (np.arange(3), np.arange(3).astype(np.int32)),
        (np.arange(6).reshape(2, 3), np.arange(6).reshape(3, 2)),
        (np.arange(3), [0, 1, 2]),
        (1 + 2j, 1 + 3j),
        (math.inf, -math.inf),
    ],
)
def test_values_that_differ_give_different_keys(one: Any, two: Any) -> None:
    for generator in (canonical_hash,):
        assert generator(PlainComponent({"p": one})) != generator(PlainComponent({"p": two}))


def test_parameterset_insertion_order_does_not_matter() -> None:
    one = ParameterSet({"a": 1, "b": {"x": 1.5, "y": [1, 2]}, "c": "s"})
    two = ParameterSet({"c": "s", "b": {"y": [1, 2], "x": 1.5}, "a": 1})
    assert list(one) != list(two)
    for generator in GENERATORS:
        assert generator(SimpleComponent(one)) == generator(SimpleComponent(two))


def test_parameterset_and_dict_with_equal_content_agree() -> None:
    tree = {"a": 1, "b": {"c": 2}}
    assert canonical_parameters(ParameterSet(tree)) == canonical_parameters(tree)
    as_dict = SimpleComponent({})
    as_dict.parameters = tree
    assert canonical_hash(SimpleComponent(ParameterSet(tree))) == canonical_hash(as_dict)


@pytest.mark.parametrize("generator", GENERATORS)
def test_version_type_and_inputs_are_part_of_the_key(generator: Any) -> None:
    base = SimpleComponent({"a": 1}, input=SimpleComponent({"u": 1}))
    variants = [
        SimpleComponent({"a": 1}, input=SimpleComponent({"u": 1}), version="2"),
        OtherComponent({"a": 1}, input=SimpleComponent({"u": 1})),
        SimpleComponent({"a": 1}, input=SimpleComponent({"u": 2})),
        SimpleComponent({"a": 1}, input=SimpleComponent({"u": 1}, version="9")),
        SimpleComponent({"a": 1}),
    ]
    keys = {generator(base), *(generator(v) for v in variants)}
    assert len(keys) == len(variants) + 1


def test_supported_scalar_types() -> None:
    class Colour(enum.Enum):
        RED = 1

    values = [
        decimal.Decimal("1.5"),
        fractions.Fraction(1, 3),
        uuid.UUID(int=5),
        datetime.date(2020, 1, 2),
        datetime.datetime(2020, 1, 2, 3, 4, 5),
        datetime.timedelta(seconds=3),
        PurePosixPath("/data/x"),
        Colour.RED,
        {1, 2, 3},
        frozenset({"a"}),
        np.int64(3),
        np.zeros(0),
        np.zeros((2,), dtype=[("x", "f8"), ("y", "i4")]),
    ]
    keys = {canonical_hash(PlainComponent({"v": v})) for v in values}
    assert len(keys) == len(values)
    assert canonical_hash(PlainComponent({"v": {3, 1, 2}})) == canonical_hash(
        PlainComponent({"v": {1, 2, 3}})
    )


@pytest.mark.parametrize(
    ("parameters", "path"),
    [
        ({"f": lambda: 0}, "f"),
        ({"a": {"b": object()}}, "a.b"),
        ({"a": [1, {"c": math.nan}]}, "a[1].c"),
        ({"a": np.float32("nan")}, "a"),
        ({"a": np.array([object()])}, "a"),
        ({"g": (x for x in range(0))}, "g"),
        ({1: {"x": object()}}, "[1].x"),
        ({"s": {object()}}, "s{...}"),
    ],
)
def test_unencodable_values_name_their_path(parameters: dict[Any, Any], path: str) -> None:
    with pytest.raises(UnhashableParameterError) as caught:
        canonical_hash(PlainComponent(parameters))
    assert caught.value.path == path
    assert isinstance(caught.value, TypeError)
    assert path in str(caught.value)


def test_self_containing_parameters_are_refused() -> None:
    loop: dict[str, Any] = {"a": 1}
    loop["self"] = loop
    with pytest.raises(UnhashableParameterError, match="contains itself"):
        canonical_hash(PlainComponent(loop))


def test_unencodable_version() -> None:
    with pytest.raises(UnhashableParameterError, match="version"):
        canonical_hash(PlainComponent({}, version=object()))


def test_join_with_underscores_is_readable_and_sorted() -> None:
    key = join_with_underscores(SimpleComponent({"b": 2, "a": {"y": "s", "x": 1.5}}, version="3"))
    assert key == "components.SimpleComponent-r3_a.x=1.5_a.y='s'_b=2"
    upstream = SimpleComponent({"r": 1}, version="1")
    assert join_with_underscores(SimpleComponent({"a": 1}, input=upstream, version="2")) == (
        "components.SimpleComponent-r2_a=1__components.SimpleComponent-r1_r=1"
    )
    with pytest.raises(UnhashableParameterError, match="canonical_hash"):
        join_with_underscores(PlainComponent({"a": np.zeros(3)}))


def test_hash_pickle_is_a_fixed_length_digest() -> None:
    short = hash_pickle(SimpleComponent({"a": 1}))
    long = hash_pickle(SimpleComponent({f"p{i}": i for i in range(500)}))
    assert len(short) == len(long) == 40


def test_cycles_raise_component_error_listing_types() -> None:
    a = SimpleComponent({"a": 1})
    b = OtherComponent({"b": 1}, input=a)
    a.input = [SimpleComponent({"ok": 1}), b]
    for generator in GENERATORS:
        with pytest.raises(ComponentError, match="cycle") as caught:
            generator(a)
        assert "components.OtherComponent" in str(caught.value)
    selfish = SimpleComponent({})
    selfish.input = selfish
    with pytest.raises(ComponentError, match="cycle"):
        canonical_hash(selfish)


def test_deep_chains_do_not_hit_the_recursion_limit() -> None:
    node = SimpleComponent({"i": 0})
    for i in range(1, 5000):
        node = SimpleComponent({"i": i}, input=node)
    for generator in (canonical_hash, hash_pickle):
        assert generator(node)


def test_shared_sub_input_is_walked_once() -> None:
    shared = SimpleComponent({"s": 1})
    layer = [SimpleComponent({"i": i}, input=shared) for i in range(10)]
    top = SimpleComponent({"top": 1}, input=layer)
    order = walk_inputs(top)
    assert len(order) == 12
    assert order[0] is shared
    assert order[-1] is top


def test_numpy_arrays_are_hashed_by_content() -> None:
    a = np.arange(1000, dtype=float)
    b = a.copy()
    assert canonical_hash(PlainComponent({"w": a})) == canonical_hash(PlainComponent({"w": b}))
    b[500] += 1e-12
    assert canonical_hash(PlainComponent({"w": a})) != canonical_hash(PlainComponent({"w": b}))
    view = np.arange(2000, dtype=float)[::2]  # not contiguous: hashed by its values
    assert canonical_hash(PlainComponent({"w": view})) == canonical_hash(
        PlainComponent({"w": np.ascontiguousarray(view)})
    )


# -- property-based ---------------------------------------------------------------------------

_leaves = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
)
_trees = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
_params = st.dictionaries(st.text(max_size=4), _trees, max_size=5)


def _reversed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed(v) for v in value]
    return value


@settings(max_examples=200, deadline=None)
@given(_params)
def test_equal_trees_in_any_order_give_equal_keys(params: dict[str, Any]) -> None:
    assert canonical_hash(PlainComponent(params)) == canonical_hash(
        PlainComponent(_reversed(params))
    )


def _leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaf_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaf_paths(v, (*path, i))]
    return [path]


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: (_replace(v, rest, new) if k == head else v) for k, v in value.items()}
    return [(_replace(v, rest, new) if i == head else v) for i, v in enumerate(value)]


@settings(max_examples=200, deadline=None)
@given(_params, st.data())
@pytest.mark.slow
def test_changing_any_leaf_changes_the_key(params: dict[str, Any], data: st.DataObject) -> None:
    paths = _leaf_paths(params)
    if not paths or paths == [()]:
        return
    path = data.draw(st.sampled_from([p for p in paths if p]))
    old = params
    for part in path:
        old = old[part]

    def differs(value: Any) -> bool:
        return not (type(value) is type(old) and value == old)

    new = data.draw(_leaves.filter(differs))
    if isinstance(new, float) and isinstance(old, float) and new == old:
        return  # 0.0 and -0.0: keys differ anyway, but equality says they are equal
    changed = _replace(params, path, new)
    assert canonical_hash(PlainComponent(params)) != canonical_hash(PlainComponent(changed))


@settings(max_examples=100, deadline=None)
@given(_params, st.text(min_size=1, max_size=4))
def test_renaming_a_key_changes_the_key(params: dict[str, Any], suffix: str) -> None:
    if not params:
        return
    name = next(iter(params))
    renamed = {(k + suffix if k == name else k): v for k, v in params.items()}
    if len(renamed) != len(params):
        return
    assert canonical_hash(PlainComponent(params)) != canonical_hash(PlainComponent(renamed))


@settings(max_examples=100, deadline=None)
@given(_params, _leaves, _leaves)
def test_changing_the_version_changes_the_key(params: dict[str, Any], one: Any, two: Any) -> None:
    if type(one) is type(two) and one == two:
        return
    if isinstance(one, float) and isinstance(two, float) and one == two:
        return  # 0.0 and -0.0
    assert canonical_hash(PlainComponent(params, version=one)) != canonical_hash(
        PlainComponent(params, version=two)
    )


@settings(max_examples=100, deadline=None)
@given(_params)
def test_changing_the_type_changes_the_key(params: dict[str, Any]) -> None:
    assert canonical_hash(PlainComponent(params)) != canonical_hash(_SubComponent(params))


class _SubComponent(PlainComponent):
    """Same attributes as PlainComponent, another type."""


@settings(max_examples=100, deadline=None)
@given(_params, _params, _params)
def test_changing_any_input_changes_the_key(
    params: dict[str, Any], first: dict[str, Any], second: dict[str, Any]
) -> None:
    if canonical_parameters(first) == canonical_parameters(second):
        return
    shared = PlainComponent({"shared": True})
    one = PlainComponent(params, input=[shared, PlainComponent(first)])
    two = PlainComponent(params, input=[shared, PlainComponent(second)])
    assert canonical_hash(one) != canonical_hash(two)
    deeper_one = PlainComponent(params, input=PlainComponent({}, input=PlainComponent(first)))
    deeper_two = PlainComponent(params, input=PlainComponent({}, input=PlainComponent(second)))
    assert canonical_hash(deeper_one) != canonical_hash(deeper_two)
