"""The options every store class takes as keyword arguments (`StoreOptions`)."""

from __future__ import annotations

from typing import Literal, TypedDict

from ._compression import Compression
from .signing import SigningKey

__all__ = ["MapArgument", "StoreOptions"]

MapArgument = bool | Literal["r", "c"] | None
"""``mmap=`` of a read: True (or "r") read-only maps, "c" copy-on-write, False none,
None the store's default."""


class StoreOptions(TypedDict, total=False):
    """Keyword arguments of every store class (`AsyncDataStore` documents the first two).

    `compression` (``"zstd"``, ``"lz4"``, ``"blosc2"``, with a level: ``"zstd:9"``)
    compresses what the store writes; every store reads compressed records. `mmap` is
    the default of ``retrieve(mmap=...)``: True maps record files read-only, ``"c"``
    copy-on-write (see the "Large arrays" page).
    """

    signing_key: SigningKey | None
    verify_on_read: bool
    compression: str | Compression | None
    mmap: bool | Literal["r", "c"]
