"""Warnings that point at the user's line: `warn_user`, and `relaying` for the calls whose
work runs where the user's frames are not (the blocking API's loop thread, `warm`'s
child tasks).

A `StaleCodeWarning` issued with a fixed ``stacklevel`` named ``_core/staleness.py``; issued on
the portal's thread it named asyncio. `warn_user` walks up to the first frame outside
adatastore and the event-loop machinery (3.12's ``skip_file_prefixes``, for 3.11);
inside `relaying` it holds the warning instead, and the ``with`` block's end issues what
it held from the thread and task that entered it — the user's.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import warnings
from collections.abc import Iterator

__all__ = ["Held", "caller_level", "hold", "issue", "relaying", "warn_user"]

_held: contextvars.ContextVar[list[tuple[str, type[Warning]]] | None] = contextvars.ContextVar(
    "adatastore_held_warnings", default=None
)

_MACHINERY = frozenset(
    {"adatastore", "anyio", "asyncio", "trio", "sniffio", "outcome", "concurrent", "threading"}
    | {"contextlib", "functools", "contextvars", "runpy"}
)


def caller_level() -> int:
    """The `warnings.warn` stacklevel, seen from this function's caller, of the first
    frame outside adatastore and the event-loop machinery (2 when there is none on this
    thread's stack)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).split(".", 1)[0] not in _MACHINERY:
            return level
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return 2


def warn_user(message: str, category: type[Warning]) -> None:
    """Warn at the user's line, or hold the warning for the `relaying` block around."""
    held = _held.get()
    if held is not None:
        held.append((message, category))
        return
    warnings.warn(message, category, stacklevel=caller_level())


Held = list[tuple[str, type[Warning]]]


def hold(held: Held) -> None:
    """Hold the warnings issued from here on in this context (a task of the blocking
    API's loop, which ends with its call) in `held`, for `issue` in the caller's thread."""
    _held.set(held)


def issue(held: Held) -> None:
    """Issue held warnings, from the caller's frame."""
    for message, category in held:
        warn_user(message, category)


@contextlib.contextmanager
def relaying() -> Iterator[None]:
    """Hold the warnings issued inside (in this context: tasks started inside inherit
    it), and issue them at the block's end, from here."""
    held: Held = []
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
        issue(held)
