"""Key generators: turn a component's identity into the string that names its entries.

The default, `canonical_hash`, encodes the parameters canonically (mapping keys sorted,
every scalar tagged with its type, floats exact, numpy arrays by dtype, shape and bytes)
and hashes that together with the full type, the version and the keys of the inputs.
A value with no canonical encoding raises `UnhashableParameterError` naming its path:
a wrong cache hit is the worst bug a cache can have, so nothing falls back to ``repr()``.

`hash_pickle` and `join_with_underscores` are the two key generators of the original
NeuroTools module, kept under their names (made deterministic: parameters are sorted).
"""

from __future__ import annotations

import datetime
import decimal
import enum
import fractions
import functools
import hashlib
import operator
import pickle
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import PurePath
from typing import Any

from ._keys.encoders import Refused, encoder_for, register_encoder
from ._keys.unit_encoders import has_units
from .component import Component, check_component, full_type, inputs_of, walk_inputs
from .errors import UnhashableParameterError

__all__ = [
    "KeyGenerator",
    "canonical_hash",
    "canonical_parameters",
    "full_type",
    "hash_pickle",
    "join_with_underscores",
    "register_encoder",
]

KeyGenerator = Callable[[Any], str]
"""A key generator takes a component and returns a non-empty string."""

_KEY_FORMAT = "adatastore-key-1"


# -- canonical encoding ----------------------------------------------------------------------
#
# Paths are built only when an error unwinds (each container adds its segment), so the
# common case pays nothing for them.


def _numpy() -> Any:
    # numpy is optional: a value can only be a numpy object if numpy was imported.
    return sys.modules.get("numpy")


def _segment(key: object) -> str:
    return f".{key}" if isinstance(key, str) else f"[{key!r}]"


class _Unhashable(Exception):
    """Raised inside the encoder; turned into `UnhashableParameterError` with the full path."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.segments: list[str] = []


def _encode(value: Any, out: list[str], active: set[int]) -> None:
    """Append the canonical tokens of `value` to `out`."""
    kind = type(value)
    if kind is str:
        out.append(f"s{len(value)}:{value}")
    elif kind is int:
        out.append(_int_token(value))
    elif kind is float:
        out.append(_float_token(value))
    elif value is None:
        out.append("N")
    elif kind is bool:
        out.append("T" if value else "F")
    elif isinstance(value, dict):  # ParameterSet included: no encoder lookup on this path
        _encode_container(value, out, active, _encode_mapping)
    elif isinstance(value, Mapping):
        # a registered type first: an xarray Dataset is a Mapping of its variables only
        if (found := encoder_for(value)) is not None:
            _encode_registered(value, found, out, active)
        else:
            _encode_container(value, out, active, _encode_mapping)
    elif kind is list or kind is tuple:
        _encode_container(value, out, active, _encode_sequence)
    else:
        _encode_other(value, out, active)


_NAN_MESSAGE = (
    "NaN is not equal to itself, so it cannot identify a computation; "
    "use None or a string such as 'nan' for a missing value"
)


def _int_token(value: int) -> str:
    try:
        return f"i{value};"
    except ValueError:  # beyond Python's 4,300 decimal digits: hexadecimal, tagged apart
        return f"I{value:x};"


def _float_token(value: float) -> str:
    if value != value:
        raise _Unhashable(_NAN_MESSAGE)
    return f"f{value.hex()};"


def _encode_container(
    value: Any,
    out: list[str],
    active: set[int],
    encode: Callable[[Any, list[str], set[int]], None],
) -> None:
    ident = id(value)
    if ident in active:
        raise _Unhashable("the value contains itself")
    active.add(ident)
    try:
        encode(value, out, active)
    finally:
        active.discard(ident)


def _encode_mapping(value: Mapping[Any, Any], out: list[str], active: set[int]) -> None:
    out.append(f"{{{len(value)}:")
    if set(map(type, value)) <= _STR_ONLY:
        # The common case: string keys, sorted as strings (C-level key type check and
        # sort key: a Python key function and a generator cost ~1 µs more for 10 leaves)
        for key, item in sorted(value.items(), key=_KEY):
            kind = type(item)
            if kind is str:
                out.append(f"s{len(key)}:{key}s{len(item)}:{item}")
            elif kind is float and item == item:
                out.append(f"s{len(key)}:{key}f{item.hex()};")
            elif kind is int and -_SHORT_INT < item < _SHORT_INT:
                out.append(f"s{len(key)}:{key}i{item};")
            else:
                out.append(f"s{len(key)}:{key}")
                try:
                    if isinstance(item, dict):  # a nested group: no type dispatch first
                        _encode_container(item, out, active, _encode_mapping)
                    else:
                        _encode(item, out, active)
                except _Unhashable as error:
                    error.segments.append(_segment(key))
                    raise
    else:
        # Mixed key types: sort by the keys' canonical tokens.
        encoded: list[tuple[str, list[str]]] = []
        for key, item in list(value.items()):
            key_tokens: list[str] = []
            item_tokens: list[str] = []
            try:
                _encode(key, key_tokens, active)
                _encode(item, item_tokens, active)
            except _Unhashable as error:
                error.segments.append(_segment(key))
                raise
            encoded.append(("".join(key_tokens), item_tokens))
        encoded.sort(key=_first)
        for key_token, item_tokens in encoded:
            out.append(key_token)
            out.extend(item_tokens)
    out.append("}")


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


_STR_ONLY = frozenset({str})
_SHORT_INT = 10**4000  # ints written in decimal inline (Python's limit is 4,300 digits)
_KEY = operator.itemgetter(0)


def _encode_sequence(value: Any, out: list[str], active: set[int]) -> None:
    out.append(f"{'[' if isinstance(value, list) else '('}{len(value)}:")
    for index, item in enumerate(value):
        try:
            _encode(item, out, active)
        except _Unhashable as error:
            error.segments.append(f"[{index}]")
            raise
    out.append("]")


def _encode_set(value: Any, out: list[str], active: set[int]) -> None:
    tokens = []
    for item in value:
        item_tokens: list[str] = []
        try:
            _encode(item, item_tokens, active)
        except _Unhashable as error:
            error.segments.append("{...}")
            raise
        tokens.append("".join(item_tokens))
    tokens.sort()
    out.append(f"<{len(tokens)}:")
    out.extend(tokens)
    out.append(">")


def _encode_numpy(value: Any, np: Any, out: list[str]) -> None:
    if value.dtype.hasobject:
        raise _Unhashable(
            "numpy values of dtype object have no canonical bytes; use a numeric dtype"
        )
    if isinstance(value, np.ndarray):
        # as it is when C-contiguous (np.ascontiguousarray made a 0-d array 1-d: shape
        # () and (1,) shared a key, 10*ms and [10]*ms)
        array = value if value.flags.c_contiguous else np.ascontiguousarray(value)
        dtype = str(array.dtype.descr) if array.dtype.fields else array.dtype.str
        out.append(f"a{len(dtype)}:{dtype}{array.shape!r}:{_array_digest(array, np)};")
        return
    if value.dtype.kind in "fc" and bool(np.isnan(value)):
        raise _Unhashable(_NAN_MESSAGE)
    out.append(f"n{value.dtype.str}:{value.tobytes().hex()};")


def _array_digest(array: Any, np: Any) -> str:
    """sha256 of a C-contiguous array's bytes. datetime64 and timedelta64 arrays (and
    structured ones holding them) refuse the buffer protocol ("cannot include dtype 'M'
    in a buffer"): their bytes are read through a byte view, the same bytes (the unit is
    in the dtype, NaT is the smallest int64)."""
    if not array.size:
        return hashlib.sha256(b"").hexdigest()
    if array.dtype.kind in "mM" or array.dtype.fields:
        return hashlib.sha256(array.reshape(-1).view(np.uint8).data).hexdigest()
    return hashlib.sha256(array.data.cast("B")).hexdigest()


def _text_items(array: Any) -> Any:
    """An array's items as nested lists of their text (for people to read)."""
    return array.astype(str).tolist() if array.dtype.kind in "mM" else repr(array.tolist())


def _encode_other(value: Any, out: list[str], active: set[int]) -> None:
    np = _numpy()
    if np is not None and (type(value) is np.ndarray or isinstance(value, np.generic)):
        _encode_numpy(value, np, out)
    elif np is not None and isinstance(value, np.ndarray):
        # A subclass (units, a mask, metadata): never by its numbers alone, which made
        # 10*ms and 10*mV one key. Its encoder, or a refusal.
        found = encoder_for(value)
        if found is None:
            raise _Unhashable(
                f"a {full_type(value)} is a numpy array subclass: keyed by its numbers "
                "alone it would share a key with a plain array (and lose its units, mask "
                "or metadata); pass a plain array (numpy.asarray) and what the subclass "
                "adds as parameters of their own, or register an encoder "
                "(adatastore.keygenerators.register_encoder)"
            )
        _encode_registered(value, found, out, active)
    elif isinstance(value, bool):
        out.append("T" if value else "F")
    elif isinstance(value, enum.Enum) and not isinstance(value, int | str | float):
        out.append(f"e{len(full_type(value))}:{full_type(value)}.{value.name};")
    elif isinstance(value, int):
        out.append(_int_token(int(value)))
    elif isinstance(value, float):
        out.append(_float_token(float(value)))
    elif isinstance(value, str):
        text = str(value)
        out.append(f"s{len(text)}:{text}")
    elif isinstance(value, bytes | bytearray):
        out.append(f"b{len(value)}:{bytes(value).hex()};")
    elif isinstance(value, list | tuple):
        _encode_container(value, out, active, _encode_sequence)
    elif isinstance(value, set | frozenset):
        _encode_container(value, out, active, _encode_set)
    elif isinstance(value, complex):
        out.append(f"c{_float_token(value.real)}{_float_token(value.imag)}")
    elif isinstance(value, decimal.Decimal | fractions.Fraction | uuid.UUID):
        text = str(value)
        out.append(f"x{type(value).__name__}{len(text)}:{text}")
    elif isinstance(value, datetime.date | datetime.time | datetime.timedelta):
        text = repr(value)  # the repr of these types holds their full value, no address
        out.append(f"t{len(text)}:{text}")
    elif isinstance(value, PurePath):
        text = str(value)
        out.append(f"p{type(value).__name__}{len(text)}:{text}")
    elif (found := encoder_for(value)) is not None:
        _encode_registered(value, found, out, active)
    else:
        raise _Unhashable(
            f"a {full_type(value)} has no canonical encoding (supported: None, bool, int, "
            "float, complex, str, bytes, lists, tuples, sets, mappings, numpy arrays and "
            "scalars, Decimal, Fraction, UUID, dates and times, paths, enums, pandas and "
            "xarray objects); convert it to one of those, or register an encoder "
            "(adatastore.keygenerators.register_encoder)"
        )


def _encode_registered(
    value: Any, found: tuple[str, Callable[[Any], Any]], out: list[str], active: set[int]
) -> None:
    tag, encoder = found
    out.append(f"u{len(tag)}:{tag}")
    _encode_container(value, out, active, functools.partial(_encode_with, encoder))


def _encode_with(
    encoder: Callable[[Any], Any], value: Any, out: list[str], active: set[int]
) -> None:
    try:
        plain = encoder(value)
    except _Unhashable:
        raise
    except Refused as refusal:
        raise _Unhashable(str(refusal)) from None
    except Exception as error:
        raise _Unhashable(f"its encoder failed: {type(error).__name__}: {error}") from None
    _encode(plain, out, active)


def _encode_root(value: Any, root: str) -> str:
    out: list[str] = []
    try:
        _encode(value, out, set())
    except _Unhashable as error:
        path = (root + "".join(reversed(error.segments))).lstrip(".") or "<root>"
        raise UnhashableParameterError(path, error.message) from None
    except RecursionError:
        raise UnhashableParameterError(root or "<root>", "nested too deeply") from None
    return "".join(out)


def canonical_parameters(parameters: Any) -> str:
    """Return the canonical text encoding of a parameter tree (mainly for tests and tools)."""
    return _encode_root(parameters, "")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _component_digest(component: Component, input_digests: list[str]) -> str:
    kind = full_type(component)
    version = _encode_root(component.version, "<version>")
    text = (
        f"{_KEY_FORMAT}\0s{len(kind)}:{kind}{version}"
        f"{canonical_parameters(component.parameters)}"
        f"I{len(input_digests)}:{','.join(input_digests)}"
    )
    return _digest(text)


def _digests(component: object) -> Iterator[tuple[Component, str]]:
    """Yield (component, digest) for the component and each of its inputs, inputs first."""
    digests: dict[int, str] = {}
    for node in walk_inputs(component):
        digest = _component_digest(node, [digests[id(i)] for i in inputs_of(node)])
        digests[id(node)] = digest
        yield node, digest


def canonical_hash(component: object) -> str:
    """The default key generator: a sha256 hex digest of the component's canonical identity.

    Equal parameter trees give equal keys whatever their insertion order; a different
    value, value type, parameter name, version, component type or input gives another key.
    """
    if getattr(component, "input", _NO_INPUT) is None:  # the common case: no walk needed
        return _component_digest(check_component(component), [])
    return list(_digests(component))[-1][1]


_NO_INPUT = object()


# -- the original module's key generators ------------------------------------------------------


def _flatten(parameters: Mapping[Any, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in parameters.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from _flatten(value, name)
        else:
            yield name, value


def _sorted_flat(parameters: Mapping[Any, Any]) -> list[tuple[str, Any]]:
    return sorted(_flatten(parameters), key=lambda item: item[0])


def _ambiguous_name(parameters: Mapping[Any, Any], prefix: str = "") -> str | None:
    """The first parameter whose dotted, flattened name cannot be told apart from another
    parameter set's (a name holding a dot, a name that is not a str, an empty mapping,
    which vanishes); None when flattening is one to one."""
    for key, value in parameters.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if type(key) is not str or "." in key or not key:
            return name
        if isinstance(value, Mapping):
            found = _ambiguous_name(value, name) if value else name
            if found is not None:
                return found
    return None


def _paths(parameters: Mapping[Any, Any], prefix: tuple[Any, ...] = ()) -> Iterator[Any]:
    """(path of keys, value) of every leaf; an empty mapping is a leaf of its own."""
    for key, value in parameters.items():
        path = (*prefix, key)
        if isinstance(value, Mapping) and value:
            yield from _paths(value, path)
        else:
            yield path, ({} if isinstance(value, Mapping) else value)


def hash_pickle(component: object, *, _keys: dict[int, str] | None = None) -> str:
    """Key generator of the original module: a fixed-length sha1 digest of the pickled state.

    The state is the full type, the version, the parameters flattened to dotted names and
    sorted, and the keys of the inputs: the original's keys. Parameter sets that dotted
    names cannot tell apart (a name holding a dot, a name that is not a str, an empty
    mapping) are pickled with their key paths instead, in a state of another shape, so two
    different sets never share a key. Prefer `canonical_hash`: pickles of equal values can
    differ (and differ between Python versions), which gives misses.
    """
    keys: dict[int, str] = {} if _keys is None else _keys
    for node in walk_inputs(component):
        inputs = [keys[id(i)] for i in inputs_of(node)]
        state: tuple[Any, ...]
        if _ambiguous_name(node.parameters) is None:
            state = (full_type(node), node.version, _sorted_flat(node.parameters), inputs)
        else:
            leaves = sorted(_paths(node.parameters), key=lambda item: repr(item[0]))
            state = ("paths", full_type(node), node.version, leaves, inputs)
        try:
            data = pickle.dumps(state, protocol=4)
        except Exception as error:
            raise UnhashableParameterError(
                "parameters",
                f"hash_pickle could not pickle the state of a {full_type(node)}: {error}",
            ) from error
        keys[id(node)] = hashlib.sha1(data).hexdigest()
    return keys[id(component)]


def _readable(value: Any, path: str) -> str:
    if value is None or isinstance(value, bool | int | str):
        try:
            return repr(value)
        except ValueError:  # an int beyond 4,300 digits
            raise UnhashableParameterError(
                path, "join_with_underscores cannot write an int this long; use canonical_hash"
            ) from None
    if isinstance(value, float):
        if value != value:
            raise UnhashableParameterError(path, _NAN_MESSAGE)
        return repr(value)
    if isinstance(value, list | tuple):
        inner = ",".join(_readable(v, f"{path}[{i}]") for i, v in enumerate(value))
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    raise UnhashableParameterError(
        path,
        f"join_with_underscores writes only None, numbers, strings and lists of them, "
        f"not a {full_type(value)}; use canonical_hash for such parameters",
    )


def join_with_underscores(component: object, *, _keys: dict[int, str] | None = None) -> str:
    """Key generator of the original module: a readable ``type-rVERSION_name=value_...`` key.

    Parameters are flattened to dotted names and sorted; each input's key follows its
    user's, after a double underscore. Keys can be long: back-ends that name files with
    them shorten long keys safely. What this format cannot write unambiguously is refused
    with `UnhashableParameterError` naming it (a parameter name holding ``.`` or ``=``, a
    name that is not a str, an empty mapping, a version holding ``_``): two different
    components never share a key.
    """
    keys: dict[int, str] = {} if _keys is None else _keys
    for node in walk_inputs(component):
        ambiguous = _ambiguous_name(node.parameters)
        if ambiguous is not None:
            raise UnhashableParameterError(
                ambiguous,
                "join_with_underscores writes nested parameters as dotted names, so this "
                "name (a dot in it, not a str, or an empty mapping) could stand for another "
                "parameter set; rename it, or use canonical_hash",
            )
        flat = _sorted_flat(node.parameters)
        for name, _ in flat:
            if "=" in name:
                raise UnhashableParameterError(
                    name,
                    "join_with_underscores writes name=value, so a name holding '=' could "
                    "stand for another parameter set; rename it, or use canonical_hash",
                )
        version = str(node.version)
        if "_" in version:
            raise UnhashableParameterError(
                "<version>",
                f"join_with_underscores writes type-rVERSION_name=value, so a version "
                f"holding '_' ({version!r}) could stand for another component; use "
                "canonical_hash",
            )
        params = "_".join(f"{name}={_readable(v, name)}" for name, v in flat)
        key = f"{full_type(node)}-r{version}_{params}"
        for item in inputs_of(node):
            key += f"__{keys[id(item)]}"
        keys[id(node)] = key
    return keys[id(component)]


def graph_keys(generator: KeyGenerator, component: Component) -> dict[int, str]:
    """The key of the component and of each of its inputs (by ``id``), in one walk.

    The generators of this module key the whole graph in one pass; any other is called
    once per component (each call may walk that component's inputs again).
    """
    if generator is canonical_hash:
        return {id(node): digest for node, digest in _digests(component)}
    if generator is hash_pickle or generator is join_with_underscores:
        keys: dict[int, str] = {}
        generator(component, _keys=keys)
        return keys
    return {id(node): generator(node) for node in walk_inputs(component)}


# -- a readable description, for metadata (never used for identity) ----------------------------


def describe_parameters(value: Any, _depth: int = 0) -> Any:
    """Return a JSON-compatible rendering of a parameter tree, for metadata and tools.

    Mappings and sequences keep their shape; numbers, strings, booleans and None stay as
    they are; numpy arrays become ``{"ndarray": {"dtype", "shape", "sha256"}}`` (small ones
    also carry their values); anything else becomes ``{"repr": ...}``. This is for people
    to read: keys never depend on it.
    """
    if value is None or isinstance(value, bool | int | str):
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 14000:
            return {"repr": f"an int of {value.bit_length()} bits"}  # no 4,300-digit text
        return value if type(value) in (bool, int, str) else _plain(value)
    if isinstance(value, float):
        return float(value)
    if _depth > 100:
        return {"repr": "..."}
    if isinstance(value, Mapping):
        # keys that are not str are shown with their type: {1: .., "1": ..} are two
        return {
            (k if type(k) is str else f"<{type(k).__name__}> {_key_text(k)}"): describe_parameters(
                v, _depth + 1
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [describe_parameters(v, _depth + 1) for v in value]
    np = _numpy()
    if has_units(value):  # shown with them: "tau: asked 11. ms, stored 10. ms"
        return {"quantity": str(value)[:200]}
    if np is not None and isinstance(value, np.ndarray) and not value.dtype.hasobject:
        array = value if value.flags.c_contiguous else np.ascontiguousarray(value)
        info: dict[str, Any] = {
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "sha256": _array_digest(array, np),
        }
        if array.size <= 16:
            items = array.tolist()
            # datetime64/timedelta64 (and structured) items are not JSON: shown as text
            info["values"] = items if array.dtype.kind in "biufc" else _text_items(array)
        return {"ndarray": info}
    if np is not None and isinstance(value, np.generic):
        return value.item() if isinstance(value.item(), bool | int | float | str) else repr(value)
    return {"repr": repr(value)[:200]}


def _key_text(key: Any) -> str:
    try:
        return repr(key)[:200]
    except Exception:  # a broken __repr__ must not break a listing
        return "?"


def _plain(value: Any) -> Any:
    for kind in (bool, int, str):
        if isinstance(value, kind):
            return kind(value)
    return value
