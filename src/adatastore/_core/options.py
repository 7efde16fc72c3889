"""The options every store class takes as keyword arguments (`StoreOptions`), parsed and
checked once into `Settings`.

Diskcache's ``Cache.__init__`` parses its settings once and routes them; so does a store:
`Settings.parse` reads every option (the policy's, the codec's, ``mmap``), and `assemble`
builds each part from the result — for the facade and for an executor worker alike, which
receives the `Settings` in its `StoreSpec`. (Split over ``Policy.build``, a codec helper
and ``options.get("mmap")``, the worker's copy had lost ``mmap``: ``open_store(spec)``
read unmapped what its store mapped.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from .._codec.compression import Compression
from .._storage.fsio import MapMode
from ..errors import ConfigurationError
from ..signing import Signer, SigningKey, signer_from
from .policy import OnBadEntry, Policy

__all__ = ["MapArgument", "Settings", "StoreOptions", "check_options", "map_mode"]

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


def map_mode(mmap: object) -> MapMode | None:
    """``mmap=`` as given by a user (False, True, "r", "c") as a mapping mode."""
    if mmap is False:
        return None
    if mmap is True or mmap == "r":
        return "r"
    if mmap == "c":
        return "c"
    raise ConfigurationError(
        f"mmap must be True (read-only), 'c' (copy-on-write) or False, not {mmap!r}"
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """A store's options once parsed and checked: everything but the signing key, which
    never leaves the process (a `StoreSpec` carries these and the key's id)."""

    policy: Policy = field(default_factory=Policy)
    """Bad entries, code changes, limits."""
    verify_on_read: bool = True
    compression: Compression | None = None
    mmap: MapMode | None = None
    """The default of ``retrieve(mmap=...)``."""

    @classmethod
    def parse(cls, options: StoreOptions) -> tuple[Settings, Signer | None]:
        """The settings and the signer of `options` (a `TypeError` for a keyword that is
        no store option, a `ConfigurationError` for a bad value)."""
        check_options(options)
        settings = cls(
            Policy.build(dict(options)),
            bool(options.get("verify_on_read", True)),
            Compression.parse(options.get("compression")),
            map_mode(options.get("mmap", False)),
        )
        return settings, signer_from(options.get("signing_key"))

    def options(self) -> StoreOptions:
        """The store options that parse to these settings again."""
        options: dict[str, Any] = {
            "verify_on_read": self.verify_on_read,
            "compression": self.compression,
            "mmap": False if self.mmap is None else self.mmap,
            **self.policy.options(),
        }
        return options  # type: ignore[return-value]
