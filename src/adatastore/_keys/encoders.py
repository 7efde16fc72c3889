"""Canonical encoders for parameter types the key generator does not know by itself.

`register_encoder(cls, encoder)`: ``encoder(value)`` returns a plain value the canonical
encoding knows (mappings, lists, strings, numbers, numpy arrays, ...), which is encoded
tagged with the registered type's name, so two types never share a key by accident.
pandas (`DataFrame`, `Series`, `Index`) and xarray (`DataArray`, `Dataset`, `Variable`)
have encoders here, registered the first time a value of theirs is met (neither package
is imported by adatastore otherwise). Equal content gives equal keys; a different dtype,
index, column order, name, dimension, coordinate or attribute gives another key; a
MultiIndex is encoded level by level (dtypes, categories, their order, unused values),
periods, intervals and sparse arrays by what they hold, datetime64 and timedelta64
values by their bytes and unit. Missing values (NaN, None, NA, NaT) outside numeric and
datetime arrays encode alike, as None.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from .unit_encoders import LOADERS, Refused

__all__ = ["Refused", "encoder_for", "register_encoder"]

Encoder = Callable[[Any], Any]

_registered: dict[type, tuple[str, Encoder]] = {}
"""By the user (`register_encoder`): they come first, class by class."""
_built_in: dict[type, tuple[str, Encoder]] = {}
"""Ours (pandas, xarray, `_unit_encoders`): registered when a library's value is met."""
_loaded: set[str] = set()
_found: dict[type, tuple[str, Encoder] | None] = {}
_lock = threading.Lock()
_LIBRARIES = {"pandas", "xarray", *LOADERS}


def register_encoder(cls: type, encoder: Encoder) -> None:
    """Make values of `cls` (and its subclasses) usable as parameters: `encoder(value)`
    returns a plain value that says everything the computation depends on. It takes
    precedence over a built-in encoder of the same class (a subclass's own encoder, the
    most specific, still comes first)."""
    if not isinstance(cls, type) or not callable(encoder):
        raise TypeError("register_encoder(cls, encoder) takes a class and a callable")
    with _lock:
        _registered[cls] = (_tag(cls), encoder)
        _found.clear()


def _tag(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def encoder_for(value: object) -> tuple[str, Encoder] | None:
    """The (tag, encoder) for `value`'s type, or None: along the type's MRO, most
    specific class first, the user's encoder before ours for each class."""
    kind = type(value)
    try:
        return _found[kind]
    except KeyError:
        pass
    libraries = {base.__module__.split(".", 1)[0] for base in kind.__mro__} & _LIBRARIES
    if not libraries <= _loaded:
        _register_libraries(libraries)
    found = None
    for base in kind.__mro__:
        found = _registered.get(base) or _built_in.get(base)
        if found is not None:
            break
    _found[kind] = found
    return found


def _register_libraries(libraries: set[str]) -> None:
    """Register our encoders of the `libraries` imported so far (a value of theirs was
    met: they are)."""
    with _lock:
        for name in sorted(libraries - _loaded):
            if name not in sys.modules:
                continue
            pairs: list[tuple[type, Encoder]] = []
            if name == "pandas":
                pandas = sys.modules["pandas"]
                pairs = [
                    (pandas.DataFrame, _data_frame),
                    (pandas.Series, _series),
                    (pandas.Index, _index),
                ]
            elif name == "xarray":
                xarray = sys.modules["xarray"]
                pairs = [
                    (xarray.DataArray, _data_array),
                    (xarray.Dataset, _dataset),
                    (xarray.Variable, _variable),
                ]
            else:
                pairs = LOADERS[name]()
            for cls, encoder in pairs:
                _built_in[cls] = (_tag(cls), encoder)
            _loaded.add(name)
            _found.clear()


# -- pandas -------------------------------------------------------------------------------------


def _values(values: Any) -> Any:
    """An array's values: numeric, boolean and datetime numpy arrays as they are (their
    bytes), categoricals as categories and codes, anything else as a list of Python
    values with missing ones as None (with its shape, beyond one dimension)."""
    import numpy as np

    dtype = getattr(values, "dtype", None)
    if isinstance(dtype, np.dtype) and dtype.kind in "biufcmM":
        return np.ascontiguousarray(np.asarray(values))
    if getattr(dtype, "name", None) == "category":
        categorical = getattr(values, "array", values)
        return {
            "categories": _index(categorical.categories),
            "codes": np.asarray(categorical.codes),
            "ordered": bool(categorical.ordered),
        }
    pandas = sys.modules["pandas"]  # xarray needs it too
    array = getattr(values, "array", values)
    if isinstance(dtype, pandas.PeriodDtype):  # Period objects have no encoding of their own
        return {"period": str(dtype), "ordinals": np.asarray(array.asi8)}
    if isinstance(dtype, pandas.IntervalDtype):
        return {
            "interval": str(dtype),
            "closed": array.closed,
            "left": _values(array.left),
            "right": _values(array.right),
        }
    if isinstance(dtype, pandas.SparseDtype):  # its dtype names the fill value
        return {"sparse": str(dtype), "dense": _values(np.asarray(array.to_dense()))}
    array = np.asarray(values, dtype=object)
    items = [None if _missing(pandas, item) else item for item in array.ravel().tolist()]
    return items if array.ndim == 1 else {"shape": list(array.shape), "items": items}


def _missing(pandas: Any, item: object) -> bool:
    try:
        return bool(pandas.isna(item))
    except (TypeError, ValueError):  # a container: not a missing scalar
        return False


def _index(index: Any) -> Any:
    """An index: its type, names and dtype; a MultiIndex every level in full (as an
    Index is: dtype, categories and their order, values no row uses) and its codes,
    not only its tuples — levels that differ only so sort and group differently; a
    frequency where there is one (``DatetimeIndex.shift`` and ``resample`` use it)."""
    import numpy as np

    encoded: dict[str, Any] = {
        "kind": type(index).__name__,
        "names": list(index.names),
        "dtype": str(index.dtype),
    }
    if index.nlevels > 1:
        encoded["levels"] = [_index(level) for level in index.levels]
        encoded["codes"] = [np.asarray(codes) for codes in index.codes]
    else:
        encoded["values"] = _values(index)
    freq = getattr(index, "freqstr", None)
    if freq is not None:
        encoded["freq"] = freq
    return encoded


def _series(series: Any) -> Any:
    return {
        "name": series.name,
        "dtype": str(series.dtype),
        "index": _index(series.index),
        "values": _values(series),
        "attrs": dict(series.attrs),
        **_flags(series),
    }


def _data_frame(frame: Any) -> Any:
    return {
        "columns": _index(frame.columns),
        "index": _index(frame.index),
        "dtypes": [str(dtype) for dtype in frame.dtypes],
        "data": [_values(frame.iloc[:, position]) for position in range(frame.shape[1])],
        "attrs": dict(frame.attrs),
        **_flags(frame),
    }


def _flags(value: Any) -> dict[str, Any]:
    """``allows_duplicate_labels=False`` makes operations that would duplicate a label
    raise: a computation on such an object can fail where another succeeds."""
    allows = getattr(getattr(value, "flags", None), "allows_duplicate_labels", True)
    return {} if allows else {"allows_duplicate_labels": False}


# -- xarray -------------------------------------------------------------------------------------


def _variable(variable: Any) -> Any:
    return {
        "dims": list(variable.dims),
        "dtype": str(variable.dtype),
        "values": _values(variable.values),
        "attrs": dict(variable.attrs),
    }


def _coordinates(coords: Any) -> dict[Any, Any]:
    return {name: _variable(coords[name].variable) for name in coords}


def _data_array(array: Any) -> Any:
    return {
        "name": array.name,
        "variable": _variable(array.variable),
        "coords": _coordinates(array.coords),
    }


def _dataset(dataset: Any) -> Any:
    return {
        "data_vars": {name: _variable(dataset[name].variable) for name in dataset.data_vars},
        "coords": _coordinates(dataset.coords),
        "attrs": dict(dataset.attrs),
    }
