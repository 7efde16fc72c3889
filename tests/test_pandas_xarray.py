"""pandas and xarray objects as parameters (canonical keys) and as stored values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from components import PlainComponent
from helpers import run_python
from hypothesis import given, settings
from hypothesis import strategies as st

from adatastore import AsyncDataStore, AsyncShelveDataStore, AsyncSQLiteDataStore
from adatastore.errors import UnhashableParameterError
from adatastore.keygenerators import canonical_hash, canonical_parameters, register_encoder

pytestmark = pytest.mark.anyio


def stimuli() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "onset": [0.0, 12.5, 40.0],
            "amplitude": np.array([1, 2, 3], dtype=np.int64),
            "kind": ["step", "ramp", None],
            "group": pd.Categorical(["a", "b", "a"]),
        },
        index=pd.Index([10, 20, 30], name="trial"),
    )


def connectivity() -> xr.DataArray:
    return xr.DataArray(
        np.arange(6.0).reshape(2, 3),
        dims=("pre", "post"),
        coords={"pre": ["e1", "e2"], "post": [0, 1, 2]},
        attrs={"unit": "nS"},
        name="weights",
    )


def key(parameter: Any) -> str:
    return canonical_hash(PlainComponent({"p": parameter}))


# -- keys ---------------------------------------------------------------------------------------


def test_equal_content_gives_equal_keys() -> None:
    assert key(stimuli()) == key(stimuli())
    assert key(stimuli()) == key(stimuli().copy(deep=True))
    rebuilt = pd.DataFrame(stimuli().to_dict(orient="list"), index=stimuli().index)
    rebuilt["group"] = pd.Categorical(rebuilt["group"])
    assert key(rebuilt) == key(stimuli())
    assert key(stimuli()["onset"]) == key(stimuli()["onset"].copy())
    assert key(connectivity()) == key(connectivity().copy(deep=True))
    assert key(connectivity().to_dataset()) == key(connectivity().to_dataset())


def with_attrs(frame: pd.DataFrame, **attrs: Any) -> pd.DataFrame:
    frame.attrs.update(attrs)
    return frame


FRAME_CHANGES: dict[str, Callable[[pd.DataFrame], Any]] = {
    "a value": lambda f: f.assign(onset=[0.0, 12.5, 41.0]),
    "a dtype": lambda f: f.astype({"onset": "float32"}),
    "an int width": lambda f: f.astype({"amplitude": "int32"}),
    "a nullable dtype": lambda f: f.astype({"amplitude": "Int64"}),
    "the column order": lambda f: f[["amplitude", "onset", "kind", "group"]],
    "a column name": lambda f: f.rename(columns={"onset": "start"}),
    "the index values": lambda f: f.set_axis([10, 20, 31]),
    "the index name": lambda f: f.rename_axis("run"),
    "the index dtype": lambda f: f.set_axis(pd.Index([10.0, 20.0, 30.0], name="trial")),
    "the row order": lambda f: f.iloc[[1, 0, 2]],
    "a missing value": lambda f: f.assign(kind=["step", "ramp", "none"]),
    "categories": lambda f: f.assign(group=pd.Categorical(["a", "b", "a"], categories=["b", "a"])),
    "an ordered categorical": lambda f: f.assign(
        group=pd.Categorical(["a", "b", "a"], ordered=True)
    ),
    "the columns' name": lambda f: f.rename_axis(columns="field"),
    "attrs": lambda f: with_attrs(f, source="lab"),
    "a series instead": lambda f: f["onset"],
    "the index alone": lambda f: f.index,
}


@pytest.mark.parametrize("change", sorted(FRAME_CHANGES))
def test_every_difference_in_a_data_frame_gives_another_key(change: str) -> None:
    assert key(FRAME_CHANGES[change](stimuli())) != key(stimuli()), change


def test_series_and_multi_indexes_have_keys_of_their_own() -> None:
    series = pd.Series([1.0, 2.0], index=["a", "b"], name="rate")
    assert key(series) != key(series.rename("gain"))
    assert key(series) != key(series.to_frame())
    multi = pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["x", "y"])
    assert key(multi) == key(pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["x", "y"]))
    assert key(multi) != key(multi.set_names(["x", "z"]))
    assert key(multi) != key(pd.MultiIndex.from_tuples([("a", 1), ("b", 3)], names=["x", "y"]))


ARRAY_CHANGES: dict[str, Callable[[xr.DataArray], Any]] = {
    "a value": lambda a: a.copy(data=np.arange(6.0).reshape(2, 3) + 1),
    "a dtype": lambda a: a.astype(np.float32),
    "a dimension name": lambda a: a.rename({"post": "target"}),
    "a coordinate": lambda a: a.assign_coords(post=[0, 1, 3]),
    "an extra coordinate": lambda a: a.assign_coords(delay=("post", [1.0, 1.0, 2.0])),
    "an attribute": lambda a: a.assign_attrs(unit="mS"),
    "the name": lambda a: a.rename("gains"),
    "the dimension order": lambda a: a.transpose(),
    "a dataset instead": lambda a: a.to_dataset(),
    "the variable alone": lambda a: a.variable,
}


@pytest.mark.parametrize("change", sorted(ARRAY_CHANGES))
def test_every_difference_in_an_xarray_object_gives_another_key(change: str) -> None:
    assert key(ARRAY_CHANGES[change](connectivity())) != key(connectivity()), change


def test_datasets_differ_by_variables_coordinates_and_attributes() -> None:
    dataset = xr.Dataset(
        {"v": (("t",), np.arange(4.0)), "w": (("t",), np.ones(4))}, coords={"t": np.arange(4)}
    )
    assert key(dataset) == key(dataset.copy(deep=True))
    assert key(dataset) != key(dataset.drop_vars("w"))
    assert key(dataset) != key(dataset.assign_attrs(note="x"))
    assert key(dataset) != key(dataset.assign_coords(t=np.arange(1, 5)))
    assert key(dataset) != key(dataset.rename({"w": "u"}))


KEY_IN_A_PROCESS = """
import numpy as np, pandas as pd, xarray as xr
import test_pandas_xarray as here
print(here.key(here.stimuli()), here.key(here.connectivity()))
"""


def test_keys_are_the_same_in_another_process() -> None:
    result = run_python(KEY_IN_A_PROCESS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [key(stimuli()), key(connectivity())]


def test_the_encoding_is_pinned() -> None:
    """The canonical text of a small frame, as written by this version with the pandas
    installed here: a change to it changes every key users have (say so in the notes)."""
    frame = pd.DataFrame({"x": [1.5, 2.0]}, index=pd.Index(["a", "b"], name="i"))
    assert canonical_parameters({"f": frame}).startswith(
        "{1:s1:fu16:pandas.DataFrame{5:s5:attrs{0:}s7:columns{4:s5:dtype"
    )
    text = canonical_parameters({"f": frame})
    assert "s4:data[1:a3:<f8(2,):" in text
    assert "s6:values[2:s1:as1:b]" in text  # the index's strings, as a list


def test_a_user_registered_encoder_makes_a_type_usable() -> None:
    class Stimulus:
        def __init__(self, amplitude: float, shape: str) -> None:
            self.amplitude, self.shape = amplitude, shape

    with pytest.raises(UnhashableParameterError, match=r"Stimulus has no canonical encoding"):
        key(Stimulus(1.0, "step"))
    register_encoder(Stimulus, lambda s: {"amplitude": s.amplitude, "shape": s.shape})
    assert key(Stimulus(1.0, "step")) == key(Stimulus(1.0, "step"))
    assert key(Stimulus(1.0, "step")) != key(Stimulus(2.0, "step"))
    assert key(Stimulus(1.0, "step")) != key({"amplitude": 1.0, "shape": "step"})

    class Ramp(Stimulus):
        pass

    assert key(Ramp(1.0, "x")) == key(Ramp(1.0, "x"))  # subclasses use the encoder too


def test_an_encoder_that_fails_or_returns_the_unencodable_names_the_path() -> None:
    class Broken:
        pass

    class Opaque:
        pass

    register_encoder(Broken, lambda value: 1 / 0)
    register_encoder(Opaque, lambda value: object())
    with pytest.raises(UnhashableParameterError, match=r"'p'.*encoder failed: ZeroDivision"):
        key(Broken())
    with pytest.raises(UnhashableParameterError, match=r"'p'.*builtins.object has no canonical"):
        key(Opaque())
    with pytest.raises(TypeError):
        register_encoder("not a class", str)  # type: ignore[arg-type]


def test_object_dtype_arrays_in_xarray_are_encoded_by_value_and_shape() -> None:
    labels = xr.DataArray(np.array(["a", None, "c"], dtype=object), dims=("n",))
    assert key(labels) == key(labels.copy(deep=True))
    assert key(labels) != key(labels.copy(data=np.array(["a", None, "d"], dtype=object)))
    square = xr.Variable(("x", "y"), np.array([["a", "b"], ["c", "d"]], dtype=object))
    row = xr.Variable(("x", "y"), np.array([["a", "b", "c", "d"]], dtype=object))
    assert key(square) != key(row)


# -- stored values ------------------------------------------------------------------------------


STORES: dict[str, Callable[..., AsyncDataStore]] = {
    "files": lambda path, **options: AsyncShelveDataStore(path / "files", **options),
    "sqlite": lambda path, **options: AsyncSQLiteDataStore(path / "db.sqlite", **options),
}


def big_frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {"v": rng.normal(size=1 << 17), "spikes": np.arange(1 << 17, dtype=np.int64)},
        index=pd.RangeIndex(1 << 17, name="step"),
    )


@pytest.mark.parametrize("compression", [None, "zstd"])
@pytest.mark.parametrize("where", sorted(STORES))
async def test_pandas_and_xarray_values_round_trip_exactly_and_map(
    tmp_path: Path, where: str, compression: str | None
) -> None:
    component = PlainComponent({"stimuli": stimuli(), "weights": connectivity()})
    frame = big_frame()
    dataset = xr.Dataset(
        {"rate": (("t",), np.linspace(0, 1, 1 << 17))}, coords={"t": np.arange(1 << 17)}
    )
    async with STORES[where](tmp_path, compression=compression) as store:
        await store.store(component, "frame", frame)
        await store.store(component, "dataset", dataset)
        await store.store(component, "small", stimuli())
        pd.testing.assert_frame_equal(await store.retrieve(component, "frame"), frame)
        xr.testing.assert_identical(await store.retrieve(component, "dataset"), dataset)
        pd.testing.assert_frame_equal(await store.retrieve(component, "small"), stimuli())
        mapped = await store.retrieve(component, "frame", mmap=True)
        pd.testing.assert_frame_equal(mapped, frame)
        column = mapped["v"].to_numpy()
        assert not column.flags.writeable
        if compression is None:  # the blocks come straight from the record file
            base = column
            while base is not None and not isinstance(base, memoryview):
                base = base.base
            assert base is not None
            assert type(base.obj).__name__ == "FileMap"
        mapped_dataset = await store.retrieve(component, "dataset", mmap=True)
        xr.testing.assert_identical(mapped_dataset, dataset)
        # parameters recorded: explain and the listing work with these parameters
        assert {entry.attribute_name for entry in await store.list_contents()} == {
            "frame",
            "dataset",
            "small",
        }
        explanation = await store.explain(component, "frame")
        assert explanation.hit


# -- what a MultiIndex, a time series or an extension array holds (issue 29, items 3, 4) ---------


def categorical_multi(categories: list[str], ordered: bool = False) -> pd.MultiIndex:
    level = pd.Categorical(["b", "a"], categories=categories, ordered=ordered)
    return pd.MultiIndex.from_arrays([level, [1, 2]], names=["kind", "n"])


def test_a_multi_index_keys_by_its_levels_not_its_tuples() -> None:
    """Two MultiIndexes with the same tuples computed differently and shared a key."""
    one = pd.Series([10, 20], index=categorical_multi(["a", "b"]))
    other = pd.Series([10, 20], index=categorical_multi(["b", "a"]))
    assert list(one.sort_index()) != list(other.sort_index())  # [20, 10] vs [10, 20]
    assert key(one) != key(other)
    unused = pd.Series([10, 20], index=categorical_multi(["a", "b", "c"]))
    grouped = unused.groupby(level="kind", observed=False).sum()
    assert len(grouped) != len(one.groupby(level="kind", observed=False).sum())  # 3 vs 2
    assert key(unused) != key(one)
    ordered = pd.Series([10, 20], index=categorical_multi(["a", "b"], ordered=True))
    assert key(ordered) != key(one)
    as_int = pd.MultiIndex.from_arrays([[1, 2], [1, 2]])
    as_float = pd.MultiIndex.from_arrays([[1.0, 2.0], [1, 2]])
    assert key(as_int) != key(as_float)  # the tuples (1, 1) == (1.0, 1) in Python
    assert key(one) == key(pd.Series([10, 20], index=categorical_multi(["a", "b"])))


TIMES: dict[str, Any] = {
    "days": np.array(["2020-01-01", "2020-01-02"], dtype="M8[D]"),
    "seconds": np.array(["2020-01-01", "2020-01-02"], dtype="M8[s]"),
    "with NaT": np.array(["2020-01-01", "NaT"], dtype="M8[D]"),
    "durations": np.array([1, 2], dtype="m8[s]"),
    "durations in ms": np.array([1000, 2000], dtype="m8[ms]"),
    "a NaT scalar": np.datetime64("NaT", "s"),
    "a date scalar": np.datetime64("2020-01-01", "D"),
    "a date column": pd.DataFrame({"t": pd.to_datetime(["2020-01-01", "2020-01-02"])}),
    "a DatetimeIndex": pd.date_range("2020-01-01", periods=3, freq="D"),
    "without its freq": pd.DatetimeIndex(list(pd.date_range("2020-01-01", periods=3))),
    "hourly": pd.date_range("2020-01-01", periods=3, freq="h"),
    "a duration Series": pd.Series(pd.to_timedelta([1, 2], unit="s")),
    "a time coordinate": xr.DataArray(
        [1.0, 2.0], dims="time", coords={"time": pd.date_range("2020", periods=2)}
    ),
    "a PeriodIndex": pd.period_range("2020-01", periods=3, freq="M"),
    "quarterly": pd.period_range("2020-01", periods=3, freq="Q"),
    "an IntervalIndex": pd.interval_range(0, 3),
    "closed left": pd.interval_range(0, 3, closed="left"),
    "a sparse Series": pd.Series([0.0, 1.0, 0.0], dtype=pd.SparseDtype(float, 0.0)),
    "dense": pd.Series([0.0, 1.0, 0.0]),
}


def test_time_series_and_extension_arrays_key_apart_and_alike() -> None:
    """datetime64/timedelta64 raised a raw ValueError ("cannot include dtype 'M' in a
    buffer"); periods and intervals had no encoding. Now each keys, the unit and NaT
    included, and equal values key alike."""
    keys = {name: key(value) for name, value in TIMES.items()}
    assert len(set(keys.values())) == len(keys)
    for name, value in TIMES.items():
        copy = value.copy() if hasattr(value, "copy") else value
        assert key(copy) == keys[name], name


def identical(one: pd.Series, other: pd.Series) -> bool:
    """Whether no computation can tell the two apart, by pandas' strictest comparison,
    and level by level for a MultiIndex (unused level values included)."""
    try:
        pd.testing.assert_series_equal(
            one,
            other,
            check_exact=True,
            check_index_type=True,
            check_series_type=True,
            check_categorical=True,
            check_category_order=True,
            check_freq=True,
            check_flags=True,
        )
        for index in (one.index, other.index):
            assert isinstance(index, type(one.index))
        if isinstance(one.index, pd.MultiIndex):
            for mine, theirs in zip(one.index.levels, other.index.levels, strict=True):
                pd.testing.assert_index_equal(mine, theirs, exact=True)
            assert all(
                np.array_equal(a, b)
                for a, b in zip(one.index.codes, other.index.codes, strict=True)
            )
    except AssertionError:
        return False
    return bool(one.attrs == other.attrs)


SPEC: dict[str, list[Any]] = {
    "values": ["int", "float", "float32", "Int64", "datetime", "timedelta", "category", "str"],
    "index": [
        "range",
        "int",
        "float",
        "datetime",
        "datetime-nofreq",
        "period",
        "interval",
        "categorical",
        "multi",
    ],
    "categories": ["ab", "ba", "abc"],
    "ordered": [False, True],
    "unused levels": [True, False],
    "name": [None, "x"],
    "attrs": [{}, {"unit": "ms"}],
}


def build(spec: dict[str, Any]) -> pd.Series:
    n = 2
    values = {
        "int": pd.array([1, 2], dtype="int64"),
        "float": np.array([1.0, 2.0]),
        "float32": np.array([1.0, 2.0], dtype="float32"),
        "Int64": pd.array([1, None], dtype="Int64"),
        "datetime": pd.to_datetime(["2020-01-01", "2020-01-02"]),
        "timedelta": pd.to_timedelta([1, 2], unit="s"),
        "category": pd.Categorical(
            ["a", "b"], categories=list(spec["categories"]), ordered=spec["ordered"]
        ),
        "str": np.array(["a", "b"], dtype=object),
    }[spec["values"]]
    categories = list(spec["categories"])
    index: pd.Index = {
        "range": lambda: pd.RangeIndex(n),
        "int": lambda: pd.Index([0, 1]),
        "float": lambda: pd.Index([0.0, 1.0]),
        "datetime": lambda: pd.date_range("2020", periods=n, freq="D"),
        "datetime-nofreq": lambda: pd.DatetimeIndex(["2020-01-01", "2020-01-02"]),
        "period": lambda: pd.period_range("2020-01", periods=n, freq="M"),
        "interval": lambda: pd.interval_range(0, n),
        "categorical": lambda: pd.CategoricalIndex(
            ["a", "b"], categories=categories, ordered=spec["ordered"]
        ),
        "multi": lambda: pd.MultiIndex.from_arrays(
            [pd.Categorical(["a", "b"], categories=categories, ordered=spec["ordered"]), [1, 2]]
        ),
    }[spec["index"]]()
    if isinstance(index, pd.MultiIndex) and not spec["unused levels"]:
        index = index.remove_unused_levels()
    series = pd.Series(values, index=index, name=spec["name"])
    series.attrs.update(spec["attrs"])
    return series


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_pandas_objects_sharing_a_key_are_indistinguishable(data: st.DataObject) -> None:
    """A search for any other structure whose encoding drops what changes results: two
    series built from specs differing in one choice may share a key only when pandas'
    strictest comparison cannot tell them apart."""
    spec = {name: data.draw(st.sampled_from(choices)) for name, choices in SPEC.items()}
    changed = data.draw(st.sampled_from(sorted(SPEC)))
    other_spec = {**spec, changed: data.draw(st.sampled_from(SPEC[changed]))}
    one, other = build(spec), build(other_spec)
    if key(one) == key(other):  # (keys apart for identical series cost a miss, no more)
        assert identical(one, other), (spec, other_spec)
