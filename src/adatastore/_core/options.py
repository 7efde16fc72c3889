"""The options every store class takes as keyword arguments (`StoreOptions`)."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from .._codec.compression import Compression
from ..signing import SigningKey
from .policy import OnBadEntry

__all__ = ["MapArgument", "StoreOptions", "check_options", "codec_options"]

MapArgument = bool | Literal["r", "c"] | None
"""``mmap=`` of a read: True (or "r") read-only maps, "c" copy-on-write, False none,
None the store's default."""


class StoreOptions(TypedDict, total=False):
    """Keyword arguments of every store class.

    - `signing_key` (or ``ADATASTORE_SIGNING_KEY``) signs every record and refuses
      unsigned or tampered ones before decoding them (see `adatastore.signing`).
      `verify_on_read=False` skips the payload checksum on reads (signatures are always
      checked); `verify` still checks everything.
    - `compression` (``"zstd"``, ``"lz4"``, ``"blosc2"``, with a level: ``"zstd:9"``)
      compresses what the store writes; every store reads compressed records. `mmap` is
      the default of ``retrieve(mmap=...)``: True maps record files read-only, ``"c"``
      copy-on-write (see the "Large arrays" page).
    - `on_bad_entry`: ``"recompute"`` (the default) makes `get_or_compute`, `warm` and
      ``@cached`` compute a damaged, unreadable or wrongly signed entry again;
      ``"raise"`` raises instead.
    - `warn_stale_code` (True): a `StaleCodeWarning` on a hit made by other code under
      the same version. `key_includes_code` (False): the code's fingerprint is part of
      every key, so a code change gives new keys.
    - `max_size` (``"50GB"`` or bytes), `max_entries`, `max_age` (``"30d"`` or seconds):
      limits enforced after writes, least recently used entries evicted first (see
      "Keeping a cache healthy").
    """

    signing_key: SigningKey | None
    verify_on_read: bool
    compression: str | Compression | None
    mmap: bool | Literal["r", "c"]
    on_bad_entry: OnBadEntry
    warn_stale_code: bool
    key_includes_code: bool
    max_size: int | str | None
    max_entries: int | None
    max_age: float | str | None


def check_options(options: dict[str, Any] | StoreOptions) -> None:
    """Refuse keyword arguments that are not store options, as Python would."""
    unknown = sorted(set(options) - set(StoreOptions.__annotations__))
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r} (not a store option)")


def codec_options(options: StoreOptions) -> dict[str, Any]:
    """The options `Codec.build` takes, with their defaults."""
    return {
        "signing_key": options.get("signing_key"),
        "verify_on_read": options.get("verify_on_read", True),
        "compression": options.get("compression"),
    }
