"""Serializers turn a value into bytes-like parts and back.

A serializer returns a list of parts: the first is the main stream, the others are
out-of-band buffers (pickle protocol 5 hands numpy arrays over this way, so a 100 MB
array goes to disk without being copied into one big ``bytes``). `loads` gets the same
parts back as memoryviews into the bytes read from storage.

The pickle serializer can run code while loading: only read stores that nobody you
distrust can write to. `JSONSerializer` never unpickles anything.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from .errors import SerializationError

__all__ = ["Buffer", "JSONSerializer", "PickleSerializer", "Serializer"]

Buffer = bytes | bytearray | memoryview
"""A contiguous bytes-like object."""


@runtime_checkable
class Serializer(Protocol):
    """What a store needs from a serializer.

    `name` is recorded with every entry; a store refuses to decode an entry written by a
    serializer of another name (so a JSON store never unpickles anything).
    """

    name: str

    def dumps(self, value: Any) -> list[Buffer]:
        """Return the parts of `value`: the main stream first, then out-of-band buffers."""
        ...

    def loads(self, parts: Sequence[memoryview]) -> Any:
        """Rebuild a value from the parts `dumps` returned."""
        ...


class PickleSerializer:
    """Pickle protocol 5, with out-of-band buffers for large arrays (the default)."""

    name = "pickle"

    def dumps(self, value: Any) -> list[Buffer]:
        buffers: list[pickle.PickleBuffer] = []
        try:
            main = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
            return [main, *(buffer.raw() for buffer in buffers)]
        except Exception as error:
            raise SerializationError(
                f"cannot pickle a {type(value).__module__}.{type(value).__qualname__}: {error}"
            ) from error

    def loads(self, parts: Sequence[memoryview]) -> Any:
        try:
            return pickle.loads(parts[0], buffers=parts[1:])
        except Exception as error:
            raise SerializationError(f"cannot unpickle the stored value: {error!r}") from error

    def __repr__(self) -> str:
        return "PickleSerializer()"


class JSONSerializer:
    """JSON text in UTF-8: portable and safe to load, for JSON-compatible values only.

    Tuples come back as lists and mapping keys as strings, as JSON has no other types.
    """

    name = "json"

    def dumps(self, value: Any) -> list[Buffer]:
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=True, separators=(",", ":"))
        except (TypeError, ValueError) as error:
            raise SerializationError(f"cannot write this value as JSON: {error}") from error
        return [text.encode("utf-8", "surrogatepass")]

    def loads(self, parts: Sequence[memoryview]) -> Any:
        try:
            return json.loads(bytes(parts[0]).decode("utf-8", "surrogatepass"))
        except (ValueError, RecursionError) as error:  # RecursionError: nested too deeply
            raise SerializationError(f"the stored value is not valid JSON: {error}") from error

    def __repr__(self) -> str:
        return "JSONSerializer()"
