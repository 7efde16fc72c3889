"""Signed payloads: an HMAC-SHA256 over every record, checked before anything is decoded.

Without signing, anyone who can write to a store can run code in every process that reads
it with the pickle serializer (a pickle can call any function while it loads). With a
signing key, every record carries an HMAC over the storage key, the attribute name, the
serializer, the part lengths and the payload; a record whose HMAC is missing or wrong
raises `IntegrityError` and is never unpickled, and a valid record cannot be moved to
another entry.

Give the key as ``signing_key=`` to any store, or in ``ADATASTORE_SIGNING_KEY``. For key
rotation give a list: the first key signs, every key verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Sequence

from .errors import ConfigurationError

__all__ = ["ENVIRONMENT_VARIABLE", "MIN_KEY_BYTES", "Signer", "SigningKey", "signer_from"]

ENVIRONMENT_VARIABLE = "ADATASTORE_SIGNING_KEY"
MIN_KEY_BYTES = 16
"""Shorter keys are refused: an HMAC is only as strong as its key."""

SigningKey = bytes | str | Sequence[bytes | str]
"""A key (str keys are UTF-8 encoded), or a list of keys for rotation."""

_DOMAIN = b"adatastore-hmac-1\0"
_DOMAIN_2 = b"adatastore-hmac-2\0"


class Signer:
    """Signs with the first key, verifies with any."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ConfigurationError("signing_key is an empty list")
        for key in keys:
            if len(key) < MIN_KEY_BYTES:
                raise ConfigurationError(
                    f"a signing key must be at least {MIN_KEY_BYTES} bytes long "
                    f"(got {len(key)}); use e.g. secrets.token_hex(32)"
                )
        self._keys = list(keys)

    def _mac(
        self,
        secret: bytes,
        key: str,
        attribute_name: str,
        serializer: str,
        parts: Sequence[memoryview],
        extra: bytes | None,
    ) -> str:
        # Version 1 (adatastore 0.2) covered the contents; version 2 also the record's
        # provenance (`extra`), so "stored by whom, when" can be trusted too.
        mac = hmac.new(secret, _DOMAIN if extra is None else _DOMAIN_2, hashlib.sha256)
        described: list[object] = [key, attribute_name, serializer, [p.nbytes for p in parts]]
        if extra is not None:
            described.append(len(extra))
        mac.update(json.dumps(described, ensure_ascii=True).encode("ascii") + b"\0")
        if extra is not None:
            mac.update(extra)
        for part in parts:
            mac.update(part)
        return mac.hexdigest()

    def sign(
        self,
        key: str,
        attribute_name: str,
        serializer: str,
        parts: Sequence[memoryview],
        extra: bytes = b"",
    ) -> str:
        """The HMAC (hex) of a record's contents and provenance (`extra`), with the
        signing key."""
        return self._mac(self._keys[0], key, attribute_name, serializer, parts, extra)

    def verify(
        self,
        signature: str,
        key: str,
        attribute_name: str,
        serializer: str,
        parts: Sequence[memoryview],
        extra: bytes | None = None,
    ) -> bool:
        """Whether `signature` is the HMAC of these contents under one of the keys
        (version 2 with `extra`, the provenance; version 1 without)."""
        return any(
            hmac.compare_digest(
                self._mac(secret, key, attribute_name, serializer, parts, extra), signature
            )
            for secret in self._keys
        )

    def key_id(self) -> str:
        """A name for the signing key that reveals nothing of it (an HMAC of a constant):
        workers of ``warm(executor=...)`` check that their key is the caller's."""
        return hmac.new(self._keys[0], b"adatastore-key-id", hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"<Signer with {len(self._keys)} key(s)>"


def _as_bytes(key: bytes | str) -> bytes:
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, bytes | bytearray):
        return bytes(key)
    raise ConfigurationError(f"a signing key must be bytes or str, not {type(key).__name__}")


def signer_from(signing_key: SigningKey | None) -> Signer | None:
    """The signer for a store's `signing_key` option; None means ADATASTORE_SIGNING_KEY."""
    if signing_key is None:
        from_environment = os.environ.get(ENVIRONMENT_VARIABLE)
        if not from_environment:
            return None
        signing_key = from_environment
    if isinstance(signing_key, bytes | str):
        return Signer([_as_bytes(signing_key)])
    if isinstance(signing_key, list | tuple):
        return Signer([_as_bytes(key) for key in signing_key])
    raise ConfigurationError(
        f"signing_key must be bytes, str or a list of them, not {type(signing_key).__name__}"
    )
