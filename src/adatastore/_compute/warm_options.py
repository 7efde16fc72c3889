"""`warm`'s options, named once: `WarmKeywords` types them for the two facades'
``**options``, `WarmOptions` holds them (with their defaults) from the facade down to the
pipelines, parsed once at the top (diskcache's ``Cache.__init__`` routes its settings so).

Before, the ten keywords were spelled out five times — the async and blocking facades,
``_sweep.warm``, ``WarmRun`` and ``RemoteWarm`` — and each new option meant five edits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from ..records import WarmProgress
from .flights import DEFAULT_LOCK_TIMEOUT

__all__ = ["WarmKeywords", "WarmOptions"]


class WarmKeywords(TypedDict, total=False):
    """The keywords of `AsyncDataStore.warm` and `SyncDataStore.warm` (documented there;
    the defaults are `WarmOptions`'s)."""

    concurrency: int | None
    threads: int | bool | None
    progress: bool | Callable[[WarmProgress], None]
    processes: bool
    stop_on_error: bool
    cross_process: bool
    lock_timeout: float | None
    executor: object
    store_in_workers: bool | None
    check_stored: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WarmOptions:
    """One call's `warm` options, as given (``_sweep.warm`` checks how they combine)."""

    concurrency: int | None = None
    threads: int | bool | None = None
    progress: bool | Callable[[WarmProgress], None] = False
    processes: bool = False
    stop_on_error: bool = False
    cross_process: bool = True
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT
    executor: object = None
    store_in_workers: bool | None = None
    check_stored: bool = True

    @classmethod
    def of(cls, keywords: Mapping[str, Any]) -> WarmOptions:
        """The options of ``warm(..., **keywords)``; an unknown keyword is a `TypeError`,
        as Python's own for a misspelt argument."""
        unknown = sorted(set(keywords) - _NAMES)
        if unknown:
            raise TypeError(f"warm() got an unexpected keyword argument {unknown[0]!r}")
        return cls(**keywords)


_NAMES = frozenset(field.name for field in dataclasses.fields(WarmOptions))
