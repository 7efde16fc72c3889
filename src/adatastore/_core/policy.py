"""Cache policy, kept apart from the record format (as diskcache keeps its disk format
apart from its eviction policy): what to do with a bad entry, whether code changes are
watched or keyed, and the size and age limits.

One frozen `Policy` per store, made from its options (`StoreOptions`) and carried by its
`StoreSpec`, so executor workers follow it too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigurationError, CorruptEntryError, IntegrityError, UnreadableValueError

__all__ = [
    "BAD_ENTRY_ERRORS",
    "BadEntry",
    "Duration",
    "OnBadEntry",
    "Policy",
    "parse_duration",
    "parse_size",
]

OnBadEntry = Literal["recompute", "raise"]
Duration = float | str | None
"""Seconds, or a text such as ``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``."""

BAD_ENTRY_ERRORS = (CorruptEntryError, IntegrityError, UnreadableValueError)
"""What makes a stored entry bad: damage, a missing or wrong signature, a value that
cannot be rebuilt. Compute paths recompute these (``on_bad_entry="recompute"``)."""


class BadEntry:
    """What a compute lookup found instead of a value: a bad entry, and why."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"<bad entry: {self.error}>"


_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([kKmMgGtT]?i?[bB]?)\s*")
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([smhdw]?)\s*")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size(value: object, what: str = "max_size") -> int | None:
    """Bytes from ``"50GB"``, ``"500MiB"``, ``"1.5e9"``-style numbers or an int; None
    stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"{what} must be a size such as '50GB', not {value!r}")
    if isinstance(value, int | float):
        size = float(value)
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value)) is not None:
        unit = match.group(2).lower().rstrip("b")
        base = 1024 if unit.endswith("i") else 1000
        power = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit.rstrip("i")]
        size = float(match.group(1)) * base**power
    else:
        raise ConfigurationError(f"{what} must be a size such as '50GB', not {value!r}")
    if not math.isfinite(size) or size < 1 or size > 2**63:
        raise ConfigurationError(f"{what} must be at least 1 byte and finite, not {value!r}")
    return int(size)


def parse_duration(value: object, what: str = "max_age") -> float | None:
    """Seconds from ``"30d"``, ``"12h"``, ``"90m"``, ``"45s"`` or a number; None stays
    None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"{what} must be a duration such as '30d', not {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.fullmatch(value)) is not None:
        seconds = float(match.group(1)) * _SECONDS[match.group(2)]
    else:
        raise ConfigurationError(
            f"{what} must be seconds or a number with a unit s, m, h, d or w "
            f"('30d', '12h', '0.5s'), not {value!r}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"{what} must be a positive, finite duration, not {value!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class Policy:
    """How a store treats bad entries, code changes and its size (`StoreOptions`)."""

    on_bad_entry: OnBadEntry = "recompute"
    warn_stale_code: bool = True
    key_includes_code: bool = False
    max_size: int | None = None
    max_entries: int | None = None
    max_age: float | None = None

    @classmethod
    def build(cls, options: dict[str, Any]) -> Policy:
        """The policy of a store from its user's options (checked)."""
        on_bad_entry = options.get("on_bad_entry", "recompute")
        if on_bad_entry not in ("recompute", "raise"):
            raise ConfigurationError(
                f"on_bad_entry must be 'recompute' or 'raise', not {on_bad_entry!r}"
            )
        max_entries = options.get("max_entries")
        if max_entries is not None and (
            not isinstance(max_entries, int) or isinstance(max_entries, bool) or max_entries < 1
        ):
            raise ConfigurationError(f"max_entries must be a positive int, not {max_entries!r}")
        return cls(
            on_bad_entry,
            bool(options.get("warn_stale_code", True)),
            bool(options.get("key_includes_code", False)),
            parse_size(options.get("max_size")),
            max_entries,
            parse_duration(options.get("max_age")),
        )

    def options(self) -> dict[str, Any]:
        """The store options that build this policy again."""
        return {field: getattr(self, field) for field in self.__dataclass_fields__}

    @property
    def recompute_bad(self) -> bool:
        return self.on_bad_entry == "recompute"

    @property
    def limited(self) -> bool:
        """Whether the store has a size, count or age limit to enforce."""
        return not (self.max_size is None and self.max_entries is None and self.max_age is None)
