"""Filesystem-safe names for keys and attribute names.

`encode_name` maps any string to one path component that cannot escape its directory:
bytes outside ``[a-z0-9_.-]`` (upper-case letters included, for case-insensitive file
systems) are percent-encoded, a leading dot is encoded (so no ``.``, ``..`` or hidden
names), and a name whose encoding is too long is cut and given a digest suffix after a
``~`` (a character the encoding never emits, so shortened names cannot collide with
plain ones). `decode_name` reverses names that were not shortened.
"""

from __future__ import annotations

import hashlib
import re
import string

__all__ = ["MAX_ENCODED_LENGTH", "decode_name", "encode_name", "is_shortened"]

MAX_ENCODED_LENGTH = 160
"""Longest encoded name; leaves room under the usual 255-byte limit for suffixes."""

_SAFE = frozenset((string.ascii_lowercase + string.digits + "_.-").encode("ascii"))
_TABLE = [chr(b) if b in _SAFE else f"%{b:02X}" for b in range(256)]
_ESCAPE = re.compile(r"%([0-9A-F]{2})")
_ENCODED = re.compile(r"(?:[a-z0-9_.\-]|%[0-9A-F]{2})+")
_PLAIN = re.compile(r"[a-z0-9_\-][a-z0-9_.\-]*")  # names that encode to themselves
_KEEP = 96  # characters of the encoding kept before the digest of a shortened name


def encode_name(name: str) -> str:
    """Return a safe, injective file name for `name`."""
    if len(name) <= MAX_ENCODED_LENGTH and _PLAIN.fullmatch(name):
        return name  # the common case (hex keys, plain attribute names)
    encoded = "".join(_TABLE[b] for b in name.encode("utf-8", "surrogatepass"))
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded) <= MAX_ENCODED_LENGTH:
        return encoded
    head = encoded[:_KEEP]
    cut = head.rfind("%", len(head) - 2)  # do not end inside an escape
    if cut != -1:
        head = head[:cut]
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"{head}~{digest}"


def is_shortened(encoded: str) -> bool:
    """Whether `encoded` was cut to fit (its original cannot be decoded from it)."""
    return "~" in encoded


def decode_name(encoded: str) -> str:
    """Return the name `encode_name` encoded; `ValueError` for shortened or foreign names."""
    if is_shortened(encoded):
        raise ValueError(f"{encoded!r} is a shortened name")
    if not _ENCODED.fullmatch(encoded):
        raise ValueError(f"{encoded!r} is not an encoded name")
    raw = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), encoded)
    name = raw.encode("latin-1").decode("utf-8", "surrogatepass")
    if encode_name(name) != encoded:
        raise ValueError(f"{encoded!r} is not an encoded name in canonical form")
    return name
