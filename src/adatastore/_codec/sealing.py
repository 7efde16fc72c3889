"""Values to sealed records and back: the serializer, the envelope, the signature.

`Codec.dump` serializes a value and returns the call that seals it (compression, digest,
signature, provenance) so that the caller decides where that call runs: records of
`OFFLOAD_BYTES` or more are sealed and checked in a worker thread, off the event loop
(xxh3 runs at 13 GB/s here: 1 MB is 80 µs, worth a hand-off of ~50 µs). `Codec.open`
checks a record (envelope, digest, signature, owner) without decoding anything;
`Codec.loads` decompresses and decodes; `Codec.decode` does both.

A record read as a map of its file (``retrieve(mmap=True)``) is not digested on reads:
hashing it would read every page of a file the caller may want a slice of (1 GiB: 35-42
ms from the page cache, 300x the 0.07-0.12 ms of the mapped retrieve; cold, the disk's
1.1-1.6 GB/s), and keep them resident.
Its header is checked, its signature too when the store signs (that does read it all),
and `verify` checks the digest on demand.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._storage.fsio import FileMap
from ..errors import (
    ConfigurationError,
    CorruptEntryError,
    IntegrityError,
    SerializationError,
    UnreadableValueError,
)
from ..provenance import CodeOrigin, Provenance, provenance_now
from ..serializers import Buffer, PickleSerializer, Serializer
from ..signing import Signer
from . import record as _record
from .compression import SMALLEST, Compression, compress_parts, decompress_part

__all__ = ["HEAD_BYTES", "OFFLOAD_BYTES", "Codec", "Dumped", "is_mapped"]

OFFLOAD_BYTES = 1 << 20
"""Records at least this large are sealed and checked in a worker thread."""
HEAD_BYTES = 16 << 10
"""Enough of a record for any header (provenance included)."""


def is_mapped(data: Buffer) -> bool:
    """Whether `data` is a map of a record file (`Backend.read_mapped`)."""
    return isinstance(data, memoryview) and isinstance(data.obj, FileMap)


@dataclass(frozen=True, slots=True)
class Dumped:
    """A serialized value: its size, and the call that seals it into record buffers."""

    size: int
    seal: Callable[[], list[Buffer]]
    compressed: bool = False

    @property
    def large(self) -> bool:
        """Whether sealing it is worth a worker thread (compressing always is)."""
        return self.size >= OFFLOAD_BYTES or self.compressed


class Codec:
    """How one store turns values into records and back."""

    __slots__ = ("compression", "serializer", "signer", "verify_on_read")

    def __init__(
        self,
        serializer: Serializer,
        signer: Signer | None,
        verify_on_read: bool,
        compression: Compression | None = None,
    ) -> None:
        self.serializer = serializer
        self.signer = signer
        self.verify_on_read = verify_on_read
        self.compression = compression

    @classmethod
    def build(
        cls,
        serializer: Serializer | None,
        signer: Signer | None,
        verify_on_read: bool = True,
        compression: Compression | None = None,
    ) -> Codec:
        """The codec of a store, its serializer checked (None: pickle)."""
        if serializer is not None and not isinstance(serializer, Serializer):
            raise ConfigurationError(
                f"serializer must have 'name', 'dumps' and 'loads'; got {serializer!r}"
            )
        return cls(serializer or PickleSerializer(), signer, verify_on_read, compression)

    def dump(
        self,
        key: str,
        attribute_name: str,
        data: Any,
        compute_seconds: float | None = None,
        code: CodeOrigin | None = None,
        expires: float | None = None,
    ) -> Dumped:
        """Serialize `data` for (key, attribute); the returned call seals it. `code` and
        `expires` go into its provenance."""
        parts = self.serializer.dumps(data)
        seal = functools.partial(
            self._seal,
            attribute_name,
            parts,
            key,
            provenance_now(compute_seconds, code, expires).to_json(),
        )
        size = sum(memoryview(part).nbytes for part in parts)
        return Dumped(size, seal, self.compression is not None and size >= SMALLEST)

    def _seal(
        self, attribute_name: str, parts: list[Buffer], key: str, provenance: dict[str, Any]
    ) -> list[Buffer]:
        codecs: list[str] = []
        if self.compression is not None:
            parts, codecs = compress_parts(parts, self.compression)
        return _record.seal(
            self.serializer.name,
            attribute_name,
            parts,
            key=key,
            signer=self.signer,
            provenance=provenance,
            compression=codecs,
        )

    def open(
        self, key: str, attribute_name: str, data: Buffer, verify: bool | None = None
    ) -> tuple[_record.Header, list[memoryview]]:
        """Check a record (envelope, digest, signature, owner) and split it; nothing is
        decoded. `verify` (default: the store's `verify_on_read`, and no for a map of a
        file) checks the digest."""
        if verify is None:
            verify = self.verify_on_read and not is_mapped(data)
        try:
            header, parts = _record.unseal(data, verify=verify)
        except _record.DamagedRecord as error:
            raise CorruptEntryError(key, attribute_name, str(error)) from None
        if self.signer is not None:
            if header.signature2 is not None:  # contents and provenance
                extra: bytes | None = header.provenance_json or b""
                signature = header.signature2
            elif header.signature is not None:  # adatastore 0.2: contents only
                extra, signature = None, header.signature
            else:
                raise IntegrityError(key, attribute_name, "the record is not signed")
            if not self.signer.verify(
                signature, key, attribute_name, header.serializer, parts, extra
            ):
                raise IntegrityError(
                    key,
                    attribute_name,
                    "the signature does not match (tampered or moved, or signed with another key)",
                )
        if header.attribute_name != attribute_name:
            raise CorruptEntryError(
                key, attribute_name, f"the record belongs to {header.attribute_name!r}"
            )
        return header, parts

    def loads(
        self,
        key: str,
        attribute_name: str,
        header: _record.Header,
        parts: list[memoryview],
        read_only: bool = False,
    ) -> Any:
        """Decompress and decode the parts of a checked record; `read_only` makes the
        arrays rebuilt from them read-only (``mmap=True``, mapped or not)."""
        if header.serializer != self.serializer.name:
            raise SerializationError(
                f"entry {attribute_name!r} of {key!r} was written by the "
                f"{header.serializer!r} serializer; this store uses {self.serializer.name!r}"
            )
        if header.compression:
            try:
                parts = [
                    decompress_part(name, part) if name else part
                    for name, part in zip(header.compression, parts, strict=True)
                ]
            except ValueError as error:
                raise CorruptEntryError(key, attribute_name, str(error)) from None
        if read_only:
            parts = [part.toreadonly() for part in parts]
        try:
            return self.serializer.loads(parts)
        except Exception as error:  # a class moved or removed, a module missing, ...
            reason = error.args[0] if isinstance(error, SerializationError) else repr(error)
            raise UnreadableValueError(key, attribute_name, str(reason)) from error

    def decode(
        self, key: str, attribute_name: str, data: Buffer, read_only: bool = False
    ) -> tuple[_record.Header, Any]:
        """`open` then `loads`: a record's header and value."""
        header, parts = self.open(key, attribute_name, data)
        return header, self.loads(key, attribute_name, header, parts, read_only)

    def check(self, key: str, attribute_name: str, data: Buffer) -> _record.Header:
        """Raise what reading the record would raise (damage, signature, unreadable
        value); the value is decoded and dropped, the header returned. A map of
        `OFFLOAD_BYTES` or more is not digested: `warm` checks what it skips this way,
        and hashing a large map reads it all (see the module docstring)."""
        verify = True if self.verify_on_read and memoryview(data).nbytes < OFFLOAD_BYTES else None
        header, parts = self.open(key, attribute_name, data, verify)
        self.loads(key, attribute_name, header, parts, read_only=True)
        return header

    @staticmethod
    def header(key: str, attribute_name: str, data: Buffer) -> _record.Header:
        """The header at the start of `data` (a whole record or its head)."""
        try:
            header, _ = _record.read_header(data)
        except _record.DamagedRecord as error:
            raise CorruptEntryError(key, attribute_name, str(error)) from None
        return header

    @staticmethod
    def provenance(header: _record.Header) -> Provenance | None:
        """A record's provenance; None when it has none or it is unreadable (damage there
        does not hide the entry: `verify` checks the header's checksum and signature)."""
        found = header.provenance
        if found is None:
            return None
        try:
            return Provenance.from_json(found)
        except ValueError:
            return None
