"""Serializers, the record envelope and file-name encoding, each on its own."""

from __future__ import annotations

import pickle
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adatastore._codec import record as _record
from adatastore._storage import naming as _naming
from adatastore.errors import SerializationError
from adatastore.serializers import JSONSerializer, PickleSerializer, Serializer

# -- serializers ------------------------------------------------------------------------------


def test_pickle_sends_arrays_out_of_band_without_copying() -> None:
    array = np.arange(1_000_000, dtype=np.float64)
    parts = PickleSerializer().dumps({"a": array})
    assert len(parts) == 2
    assert len(parts[0]) < 1000  # the main stream does not hold the data
    assert np.shares_memory(np.frombuffer(parts[1], dtype=np.float64), array)
    back = PickleSerializer().loads([memoryview(p) for p in parts])
    np.testing.assert_array_equal(back["a"], array)


def test_unpicklable_value_raises_serialization_error_with_cause() -> None:
    with pytest.raises(SerializationError, match="cannot pickle") as caught:
        PickleSerializer().dumps(lambda: 1)
    assert isinstance(caught.value.__cause__, pickle.PicklingError | AttributeError | TypeError)


def test_unpickling_garbage_raises_serialization_error() -> None:
    with pytest.raises(SerializationError):
        PickleSerializer().loads([memoryview(b"\x80\x05garbage")])


def test_json_serializer() -> None:
    serializer = JSONSerializer()
    assert isinstance(serializer, Serializer)
    parts = serializer.dumps({"a": [1, "é", None]})
    assert serializer.loads([memoryview(p) for p in parts]) == {"a": [1, "é", None]}
    with pytest.raises(SerializationError):
        serializer.dumps(object())
    with pytest.raises(SerializationError):
        serializer.loads([memoryview(b"{not json")])


# -- records ----------------------------------------------------------------------------------


def _sealed(parts: list[bytes], name: str = "x") -> bytes:
    return b"".join(bytes(b) for b in _record.seal("pickle", name, parts))


def test_record_round_trip_and_alignment() -> None:
    parts = [b"main", b"", b"z" * 1000]
    data = bytearray(_sealed(parts))
    header, views = _record.unseal(data)
    assert header.serializer == "pickle"
    assert header.attribute_name == "x"
    assert [bytes(v) for v in views] == parts
    for view in views:
        # every part starts on a 64-byte boundary of the record
        offset = (
            np.frombuffer(view, np.uint8).ctypes.data - np.frombuffer(data, np.uint8).ctypes.data
            if view.nbytes
            else 0
        )
        assert offset % _record.ALIGNMENT == 0


def test_every_single_byte_flip_is_detected() -> None:
    data = _sealed([b"hello world" * 3, b"\x00\x01"])
    for index in range(len(data)):
        damaged = bytearray(data)
        damaged[index] ^= 0x5A
        with pytest.raises(_record.DamagedRecord):
            _record.unseal(damaged)


def test_every_truncation_and_extension_is_detected() -> None:
    data = _sealed([b"payload" * 10])
    for length in range(len(data)):
        with pytest.raises(_record.DamagedRecord):
            _record.unseal(data[:length])
    with pytest.raises(_record.DamagedRecord):
        _record.unseal(data + b"\0")


# -- file names -------------------------------------------------------------------------------

_NASTY = [
    "",
    ".",
    "..",
    "../../x",
    "a/b",
    "/etc/passwd",
    "a\\b",
    "CON",
    "Spikes",
    "~x",
    "%2E",
    "é",
    "\udc80",
    "x" * 1000,
    "." * 300,
    "a b",
    "\n",
]


@pytest.mark.parametrize("name", _NASTY)
def test_encoded_names_are_safe(name: str) -> None:
    encoded = _naming.encode_name(name) if name else ""
    if not name:
        return
    assert encoded not in ("", ".", "..")
    assert not encoded.startswith(".")
    for forbidden in ("/", "\\", "\0"):
        assert forbidden not in encoded
    assert len(encoded) <= _naming.MAX_ENCODED_LENGTH
    allowed = set(string.ascii_lowercase + string.digits + "_.-%~ABCDEF")  # escapes: %2E
    assert set(encoded) <= allowed
    if not _naming.is_shortened(encoded):
        assert _naming.decode_name(encoded) == name


@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300))
def test_encoding_is_injective(one: str, two: str) -> None:
    if one != two:
        assert _naming.encode_name(one) != _naming.encode_name(two)


def test_upper_and_lower_case_stay_apart_on_case_insensitive_file_systems() -> None:
    assert _naming.encode_name("Rate").lower() != _naming.encode_name("rate").lower()


def test_foreign_names_are_not_decoded() -> None:
    for foreign in ("UPPER", "%61", "a~b", "with space"):
        with pytest.raises(ValueError, match="name"):
            _naming.decode_name(foreign)


def test_records_with_a_crc32_digest_are_still_checked() -> None:
    """Records written before the switch to xxh3 carry crc32; they must keep verifying."""
    import json
    import struct
    import zlib

    payload = b"an older record"
    header = json.dumps(
        {
            "serializer": "pickle",
            "attribute": "x",
            "lengths": [len(payload)],
            "crc32": zlib.crc32(payload),
        }
    ).encode()
    prefix = struct.pack("<4sII", _record.MAGIC, len(header), zlib.crc32(header))
    start = len(prefix) + len(header)
    record = prefix + header + bytes(-start % _record.ALIGNMENT) + payload
    parsed, (part,) = _record.unseal(record)
    assert parsed.digest == ("crc32", zlib.crc32(payload))
    assert bytes(part) == payload
    damaged = bytearray(record)
    damaged[-1] ^= 1
    with pytest.raises(_record.DamagedRecord, match="checksum"):
        _record.unseal(damaged)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "os.replace"])
def test_atomic_write_replaces_and_leaves_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    from adatastore._storage import fsio as _fsio

    if not exchange:
        monkeypatch.setattr(_fsio, "_renameat2", None)
    target = tmp_path / "value.rec"
    _fsio.atomic_write(str(target), [b"first"], durable=False)
    reader = target.open("rb")  # a reader holding the old file keeps reading it whole
    _fsio.atomic_write(str(target), [b"second", b" version"], durable=True)
    assert target.read_bytes() == b"second version"
    assert reader.read() == b"first"
    reader.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["value.rec"]
