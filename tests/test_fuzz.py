"""Property and fuzz tests: whatever bytes a record holds, and whatever parameters a
component has, only the errors we promise come out.

- The record parser: headers mutated field by field (types, ranges, nesting, missing and
  extra fields) with a valid checksum recomputed, and raw header bytes; the store's record
  check raises only `CorruptEntryError` (or `IntegrityError` when signing).
- The key generators: no two different parameter sets share a key under any of them
  (a generator may refuse a set it cannot write unambiguously, never confuse two).
"""

from __future__ import annotations

import contextlib
import json
import re
import struct
import zlib
from typing import Any

import pytest
from components import PlainComponent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adatastore import AsyncMemoryDataStore, keygenerators
from adatastore._codec import record as _record
from adatastore.errors import CorruptEntryError, IntegrityError, UnhashableParameterError

FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=70),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = ["serializer", "attribute", "lengths", "xxh3", "crc32", "hmac", "hmac2"]


def seal_raw(header: bytes, payload: bytes = b"") -> bytes:
    prefix = struct.pack("<4sII", b"ADS1", len(header), zlib.crc32(header))
    body = prefix + header
    return body + bytes(-len(body) % 64) + payload


def valid_record(signing: bool) -> tuple[AsyncMemoryDataStore, bytes]:
    store = AsyncMemoryDataStore(signing_key=b"k" * 32 if signing else None)
    sealed = _record.seal(
        "pickle",
        "v",
        [b"payload bytes"],
        key="key",
        signer=store.signer,
        provenance={"stored_at": 1.0, "host": "h"},
    )
    return store, b"".join(bytes(part) for part in sealed)


def check(store: AsyncMemoryDataStore, data: bytes) -> None:
    with contextlib.suppress(CorruptEntryError, IntegrityError):
        store._parts.context.codec.open("key", "v", bytearray(data), True)


@FUZZ
@given(
    signing=st.booleans(),
    changes=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4),
    removed=st.sets(st.sampled_from(FIELDS), max_size=3),
    provenance=st.binary(max_size=40) | json_values.map(lambda v: json.dumps(v).encode()),
)
@pytest.mark.slow
def test_mutated_headers_give_only_the_promised_errors(
    signing: bool, changes: dict[str, Any], removed: set[str], provenance: bytes
) -> None:
    store, data = valid_record(signing)
    _, offset = _record.read_header(data)
    raw_length = struct.unpack_from("<I", data, 4)[0]
    main, _, _ = data[12 : 12 + raw_length].partition(b"\0")
    fields = json.loads(main)
    fields.update(changes)
    for name in removed:
        fields.pop(name, None)
    raw = json.dumps(fields).encode() + (b"\0" + provenance if provenance else b"")
    check(store, seal_raw(raw, data[offset + (-offset % 64) :]))


@FUZZ
@given(header=st.binary(max_size=300), payload=st.binary(max_size=200))
def test_arbitrary_header_bytes_give_only_the_promised_errors(
    header: bytes, payload: bytes
) -> None:
    store, _ = valid_record(False)
    check(store, seal_raw(header, payload))


@FUZZ
@given(data=st.data())
@pytest.mark.slow
def test_flipped_bytes_give_only_the_promised_errors(data: st.DataObject) -> None:
    store, record = valid_record(data.draw(st.booleans()))
    mutable = bytearray(record)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(mutable) - 1))
        mutable[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):  # recompute the header checksum, as an attacker would
        length = struct.unpack_from("<I", mutable, 4)[0]
        if 12 + length <= len(mutable):
            struct.pack_into("<I", mutable, 8, zlib.crc32(bytes(mutable[12 : 12 + length])))
    check(store, bytes(mutable))


@pytest.mark.parametrize("depth", [10, 1000, 100_000])
def test_deeply_nested_json_in_a_header(depth: int) -> None:
    store, _ = valid_record(False)
    with pytest.raises(CorruptEntryError):
        store._parts.context.codec.open(
            "key", "v", bytearray(seal_raw(b"[" * depth + b"]" * depth)), True
        )


# -- key generators ------------------------------------------------------------------------

names = st.sampled_from(["a", "b", "a.b", "a=1_b", "b=2", "_", "1", "a_b", "", ".", "="])
keys = names | st.integers(-1, 2)
leaves = st.none() | st.integers(-2, 2) | st.sampled_from(["x", "x_b=2", "1", "a.b"])
parameter_sets = st.recursive(
    st.dictionaries(keys, leaves, max_size=3),
    lambda children: st.dictionaries(keys, leaves | children, max_size=3),
    max_leaves=6,
)
GENERATORS = [
    keygenerators.canonical_hash,
    keygenerators.hash_pickle,
    keygenerators.join_with_underscores,
]


def flattened(parameters: dict[Any, Any], prefix: str = "") -> dict[Any, Any]:
    """The same leaves under dotted names: what the legacy generators used to confuse."""
    out: dict[Any, Any] = {}
    for key, value in parameters.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flattened(value, name))
        else:
            out[name] = value
    return out


def key_or_refused(generator: Any, parameters: dict[Any, Any]) -> str | None:
    try:
        return str(generator(PlainComponent(parameters)))
    except UnhashableParameterError:
        return None


def differ(one: dict[Any, Any], two: dict[Any, Any]) -> bool:
    return keygenerators.canonical_parameters(one) != keygenerators.canonical_parameters(two)


@settings(max_examples=1500, deadline=None)
@given(one=parameter_sets, two=parameter_sets)
@pytest.mark.slow
def test_different_parameter_sets_never_share_a_key(
    one: dict[Any, Any], two: dict[Any, Any]
) -> None:
    if not differ(one, two):
        return
    for generator in GENERATORS:
        first, second = key_or_refused(generator, one), key_or_refused(generator, two)
        assert first is None or first != second, (generator.__name__, one, two)


@settings(max_examples=1500, deadline=None)
@given(parameters=parameter_sets)
@pytest.mark.slow
def test_nesting_and_its_flattening_never_share_a_key(parameters: dict[Any, Any]) -> None:
    flat = flattened(parameters)
    if not differ(parameters, flat):
        return
    for generator in GENERATORS:
        first = key_or_refused(generator, parameters)
        second = key_or_refused(generator, flat)
        assert first is None or first != second, (generator.__name__, parameters, flat)


def _read_header_or_error(data: bytes) -> object:
    try:
        return _record.read_header(data)
    except _record.DamagedRecord as error:
        return ("damaged", str(error))


names = st.sampled_from(["pickle", "v", "rates.e", 'a"b', "a\\b", "é", ""]) | st.text(max_size=12)
numbers = st.integers(min_value=-5, max_value=2**65) | st.sampled_from([0, 2**64 - 1, 2**64])


@FUZZ
@given(
    serializer=names,
    attribute=names,
    lengths=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=3)
    | st.lists(numbers, max_size=66),
    digest=numbers,
    signature=st.none()
    | st.text("0123456789abcdef", min_size=64, max_size=64)
    | st.text("0123456789abcdefABCDEF", min_size=63, max_size=65),
    ascii_only=st.booleans(),
    payload=st.binary(max_size=300),
)
@pytest.mark.slow
def test_the_fast_header_path_reads_what_the_json_path_reads(
    serializer: str,
    attribute: str,
    lengths: list[int],
    digest: int,
    signature: str | None,
    ascii_only: bool,
    payload: bytes,
) -> None:
    """Headers laid out as `seal` writes them, with any field values: the regular
    expression's reading equals the JSON decoder's, header or error."""
    fields: dict[str, Any] = {
        "serializer": serializer,
        "attribute": attribute,
        "lengths": lengths,
        "xxh3": digest,
    }
    if signature is not None:
        fields["hmac2"] = signature
    header = json.dumps(fields, ensure_ascii=ascii_only, separators=(",", ":")).encode()
    data = seal_raw(header, payload)
    fast = _read_header_or_error(data)
    common = _record._COMMON_HEADER
    _record._COMMON_HEADER = re.compile(b"(?!)")  # never matches: the JSON path alone
    try:
        slow = _read_header_or_error(data)
    finally:
        _record._COMMON_HEADER = common
    assert fast == slow
