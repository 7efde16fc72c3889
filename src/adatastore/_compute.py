"""The machinery behind `get_or_compute` and `warm`: flights, compute calls, reports.

Kept apart from `store` so the store's module stays about storing; the public methods live
on `AsyncDataStore`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.to_process

from ._waiting import Waiter
from .errors import ConfigurationError

__all__ = [
    "AwaitableResult",
    "Flight",
    "WarmProgress",
    "WarmReport",
    "call_boxed",
    "in_process",
    "is_async",
    "no_lock",
    "progress_reporter",
]


@dataclass
class WarmProgress:
    """Where a `warm` run is, passed to a progress callback after each component."""

    total: int
    """Distinct components to go through: the number given at first, less the repeats and
    unusable components as they are found."""
    duplicates: int = 0
    done: int = 0
    computed: int = 0
    already_stored: int = 0
    failed: int = 0


@dataclass(frozen=True)
class WarmReport:
    """What `warm` did."""

    computed: int
    already_stored: int
    duplicates: int
    """Components given more than once (computed once)."""
    failed: tuple[tuple[object, BaseException], ...]
    """(component, exception) for every failure."""

    @property
    def ok(self) -> bool:
        """Whether nothing failed."""
        return not self.failed


class Reporter(Protocol):
    def __call__(self, *, close: bool = False) -> None: ...


def progress_reporter(
    progress: bool | Callable[[WarmProgress], None], state: WarmProgress
) -> Reporter:
    if progress is False:
        return lambda *, close=False: None
    if callable(progress):
        callback = progress
        return lambda *, close=False: None if close else callback(state)
    try:
        from tqdm.auto import tqdm  # a widget in notebooks, text elsewhere
    except ImportError:
        raise ConfigurationError(
            "progress=True needs tqdm: pip install 'adatastore[progress]', or pass a "
            "callable to receive progress"
        ) from None
    bar = tqdm(total=state.total, unit="component", desc="warming", mininterval=0.1)
    shown = [0.0]

    def update(*, close: bool = False) -> None:
        if close:
            bar.total = state.total
            bar.n = state.done
            bar.set_postfix(_labels(state), refresh=False)
            bar.close()
            return
        # At most ~10 redraws a second: the bar's own update() is cheap, and redrawing
        # on every component cost more than 5,000 trivial computations (3.6 s against
        # 1.2 s in a notebook).
        now = time.monotonic()
        if now - shown[0] < 0.1:
            return
        shown[0] = now
        bar.total = state.total
        bar.set_postfix(_labels(state), refresh=False)
        bar.update(state.done - bar.n)

    return update


def _labels(state: WarmProgress) -> dict[str, int]:
    return {
        "computed": state.computed,
        "already stored": state.already_stored,
        "failed": state.failed,
    }


def is_async(function: object) -> bool:
    """Whether calling `function` gives a coroutine (functions, partials, async __call__)."""
    while isinstance(function, functools.partial):
        function = function.func
    if inspect.iscoroutinefunction(function):
        return True
    return callable(function) and inspect.iscoroutinefunction(type(function).__call__)


@dataclass(frozen=True, slots=True)
class AwaitableResult:
    """An awaitable a plain compute function returned, carried back from its thread."""

    awaitable: Any


def call_boxed(compute: Callable[[], Any]) -> Any:
    # Run in a worker thread. An awaitable result is boxed: it is awaited on the loop
    # (trio refuses a thread that hands back a bare coroutine).
    value = compute()
    return AwaitableResult(value) if inspect.isawaitable(value) else value


async def in_process(task: Callable[[], Any]) -> Any:
    return await anyio.to_process.run_sync(task)


@contextlib.asynccontextmanager
async def no_lock() -> AsyncIterator[bool]:
    yield True


class Flight:
    """One in-process computation of one entry, which other callers wait for.

    Waiters may be on other event loops or threads than the computation (a store shared
    by several loops): each waits with a `Waiter` of its own loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: list[Waiter] = []
        self.computing = False
        self.has_value = True  # False when a "hit" only checked that the entry exists
        self.outcome: str | None = None  # "hit", "computed", "failed" or "abandoned"
        self.value: Any = None
        self.error: BaseException | None = None

    def finish(self, outcome: str, value: Any, error: BaseException | None = None) -> None:
        with self._lock:
            self.outcome, self.value, self.error = outcome, value, error
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.wake()

    async def wait(self) -> None:
        """Return when the flight has finished."""
        with self._lock:
            if self.outcome is not None:
                return
            waiter = Waiter()
            self._waiters.append(waiter)
        await waiter.wait()
