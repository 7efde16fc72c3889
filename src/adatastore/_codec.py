"""Values to sealed records and back: the serializer, the envelope, the signature.

`Codec.dump` serializes a value and returns the call that seals it (digest, signature,
provenance) so that the caller decides where that call runs: records of `OFFLOAD_BYTES`
or more are sealed and checked in a worker thread, off the event loop (xxh3 runs at
13 GB/s here: 1 MB is 80 µs, worth a hand-off of ~50 µs). `Codec.open` checks a record
(envelope, digest, signature, owner) without decoding anything; `Codec.loads` decodes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import _record
from .errors import CorruptEntryError, IntegrityError, SerializationError
from .provenance import Provenance, provenance_now
from .serializers import Buffer, Serializer
from .signing import Signer

__all__ = ["HEAD_BYTES", "OFFLOAD_BYTES", "Codec", "Dumped"]

OFFLOAD_BYTES = 1 << 20
"""Records at least this large are sealed and checked in a worker thread."""
HEAD_BYTES = 16 << 10
"""Enough of a record for any header (provenance included)."""


@dataclass(frozen=True, slots=True)
class Dumped:
    """A serialized value: its size, and the call that seals it into record buffers."""

    size: int
    seal: Callable[[], list[Buffer]]

    @property
    def large(self) -> bool:
        """Whether sealing it is worth a worker thread."""
        return self.size >= OFFLOAD_BYTES


class Codec:
    """How one store turns values into records and back."""

    __slots__ = ("serializer", "signer", "verify_on_read")

    def __init__(self, serializer: Serializer, signer: Signer | None, verify_on_read: bool) -> None:
        self.serializer = serializer
        self.signer = signer
        self.verify_on_read = verify_on_read

    def dump(
        self, key: str, attribute_name: str, data: Any, compute_seconds: float | None = None
    ) -> Dumped:
        """Serialize `data` for (key, attribute); the returned call seals it."""
        parts = self.serializer.dumps(data)
        seal = functools.partial(
            _record.seal,
            self.serializer.name,
            attribute_name,
            parts,
            key=key,
            signer=self.signer,
            provenance=provenance_now(compute_seconds).to_json(),
        )
        return Dumped(sum(memoryview(part).nbytes for part in parts), seal)

    def open(
        self, key: str, attribute_name: str, data: Buffer, verify: bool | None = None
    ) -> tuple[_record.Header, list[memoryview]]:
        """Check a record (envelope, digest, signature, owner) and split it; nothing is
        decoded. `verify` (default: the store's `verify_on_read`) checks the digest."""
        try:
            header, parts = _record.unseal(
                data, verify=self.verify_on_read if verify is None else verify
            )
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
        self, key: str, attribute_name: str, header: _record.Header, parts: list[memoryview]
    ) -> Any:
        """Decode the parts of a checked record."""
        if header.serializer != self.serializer.name:
            raise SerializationError(
                f"entry {attribute_name!r} of {key!r} was written by the "
                f"{header.serializer!r} serializer; this store uses {self.serializer.name!r}"
            )
        return self.serializer.loads(parts)

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
