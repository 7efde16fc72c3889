"""Compute once: single-flight within a process, locks across processes.

`get_or_compute` is written against a narrow `ComputeHost` (what a store offers to it:
its stats, its flights, a lock per entry, a lookup and a put), not against the store, so
`warm` (the `warm` module beside it) depends on this module only. In a process, callers
asking for the same missing entry at once share one `Flight`: the first computes, the
others wait for its `Outcome`; across processes the back-end's lock decides who
computes.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import inspect
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import anyio.to_process
import anyio.to_thread

from .._core.ops import MISSING
from .._core.policy import BadEntry
from .._runtime.waiting import Waiter, run_to_end
from ..backend import MapMode, no_lock
from ..errors import ConfigurationError, WorkerStartupError
from ..records import WarmProgress, WarmReport
from ..stats import Stats, logger

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "MISSING",
    "AwaitableResult",
    "ComputeHost",
    "Flight",
    "Flights",
    "Outcome",
    "WarmProgress",
    "WarmReport",
    "call_boxed",
    "get_or_compute",
    "in_process",
    "is_async",
    "no_lock",
    "progress_reporter",
    "recomputed_bad",
    "run_compute",
]


DEFAULT_LOCK_TIMEOUT = 3600.0
"""Seconds `get_or_compute` and `warm` wait for another process's lock on an entry before
computing it anyway (a cache prefers a duplicate computation to waiting forever)."""


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
    labels = {
        "computed": state.computed,
        "already stored": state.already_stored,
        "failed": state.failed,
    }
    if state.in_flight:
        labels["in flight"] = state.in_flight  # tasks on an executor
    return labels


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
    """`task()` in one of anyio's worker processes (``warm(processes=True)``).

    Ctrl-C at a terminal reaches the whole process group, workers included: their
    `KeyboardInterrupt` came back as the task's result into the loop (of the blocking
    API's thread, which it stopped), and the interpreter then waited forever at exit for
    workers that lived on. So workers ignore SIGINT (the caller alone is interrupted),
    and a cancelled task kills its worker (``cancellable``): one Ctrl-C, one prompt
    `KeyboardInterrupt` in the caller, what was stored kept.
    """
    try:
        return await anyio.to_process.run_sync(_ignoring_sigint, task, cancellable=True)
    except (KeyboardInterrupt, SystemExit) as error:  # raised by the computation itself
        raise RuntimeError(
            f"the computation raised {type(error).__name__} in its worker process"
        ) from error
    except anyio.BrokenWorkerProcess as error:
        cause = error.__cause__
        if cause is None or "initialization" not in str(error):
            raise
        raise WorkerStartupError(startup_failure(cause)) from cause


def startup_failure(cause: BaseException) -> str:
    """Why a worker process could not start, for the report, the log and the error.

    anyio keeps the worker's exception only as ``__cause__`` of a `BrokenWorkerProcess`
    ('Error during worker process initialization'): every point failed with that, and
    the script's real error (an `IndexError` from reading ``sys.argv`` at import) was
    nowhere a user looks.
    """
    script = getattr(sys.modules.get("__main__"), "__file__", None) or "the main script"
    return (
        f"a worker process could not start: importing {script} there raised "
        f"{type(cause).__name__}: {cause}. Worker processes import your script again; "
        "guard what must run once (reading sys.argv, opening stores, warm) with if "
        '__name__ == "__main__":'
    )


def refuse_at_worker_import() -> None:
    """Refuse to start a warm while a worker process imports the main script.

    A script without an ``if __name__ == "__main__":`` guard calls `warm` again in each
    worker that imports it (anyio's and multiprocessing's spawn both run it as
    ``__mp_main__``): that warm waited for the locks of the entries its parent was
    computing in it, and made no progress for 60 s. While the import runs, ``__mp_main__``
    is in ``sys.modules`` and ``__main__`` is not the same module (it is once the import
    has finished, and neither exists in a forked worker), which costs two lookups.
    """
    importing = sys.modules.get("__mp_main__")
    if importing is not None and sys.modules.get("__main__") is not importing:
        raise ConfigurationError(
            "warm was called while a worker process imports your script (as __mp_main__): "
            'it has no if __name__ == "__main__": guard, so every worker would run the '
            "whole sweep again; put the code that opens the store and calls warm under it"
        )


def _ignoring_sigint(task: Callable[[], Any]) -> Any:
    """In a worker process: leave Ctrl-C to the caller, then run `task`."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return task()


class Outcome(enum.Enum):
    """How a flight ended."""

    HIT = "hit"
    """The entry was stored already."""
    COMPUTED = "computed"
    """This flight computed and stored it."""
    SHARED = "shared"
    """Another caller's flight gave the value (what a waiter reports)."""
    FAILED = "failed"
    """The computation raised; waiters get the same exception."""
    ABANDONED = "abandoned"
    """The leader stopped (cancelled) before computing: a waiter tries again."""


class Flight:
    """One in-process computation of one entry, which other callers wait for.

    Waiters may be on other event loops or threads than the computation (a store shared
    by several loops): each waits with a `Waiter` of its own loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: list[Waiter] = []
        self.computing = False
        self.has_value = True  # False when a hit only checked that the entry exists
        self.outcome: Outcome | None = None
        self.value: Any = None
        self.error: BaseException | None = None

    def finish(self, outcome: Outcome, value: Any, error: BaseException | None = None) -> None:
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


class Flights:
    """The flights of one store, by entry; safe for threads and several event loops."""

    def __init__(self) -> None:
        self._flights: dict[tuple[str, str], Flight] = {}

    def claim(self, key: str, attribute_name: str) -> tuple[Flight, bool]:
        """The entry's flight, and whether the caller leads it (made it)."""
        mine = Flight()
        # setdefault is atomic: of several threads or loops asking at once, one leads
        found = self._flights.setdefault((key, attribute_name), mine)
        return found, found is mine

    def finish(
        self,
        key: str,
        attribute_name: str,
        flight: Flight,
        outcome: Outcome,
        value: Any = None,
        error: BaseException | None = None,
    ) -> None:
        """End a flight the caller leads, and forget it."""
        if flight.outcome is None:
            flight.finish(outcome, value, error)
        self.forget(key, attribute_name, flight)

    def forget(self, key: str, attribute_name: str, flight: Flight) -> None:
        if self._flights.get((key, attribute_name)) is flight:
            del self._flights[key, attribute_name]

    def __contains__(self, entry: tuple[str, str]) -> bool:
        return entry in self._flights

    def __len__(self) -> int:
        return len(self._flights)

    def get(self, entry: tuple[str, str]) -> Flight | None:
        return self._flights.get(entry)


class ComputeHost(Protocol):
    """What a store offers to `get_or_compute` and `warm`."""

    @property
    def stats(self) -> Stats:
        """The counters a compute adds to."""
        ...

    @property
    def flights(self) -> Flights:
        """The in-process computations under way."""
        ...

    def lock(
        self, key: str, attribute_name: str, timeout: float | None
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        """The entry's cross-process lock (yields whether it was taken)."""
        ...

    async def lookup(
        self,
        key: str,
        attribute_name: str,
        value_needed: bool,
        mode: MapMode | None = None,
        component: object = None,
        compute: Callable[..., Any] | None = None,
    ) -> Any:
        """The stored value (None when only existence was asked for), `MISSING`, or a
        `BadEntry`; a hit is checked against `component`'s and `compute`'s code."""
        ...

    async def put(
        self,
        component: object,
        key: str,
        attribute_name: str,
        value: Any,
        seconds: float,
        compute: Callable[..., Any] | None = None,
    ) -> None:
        """Store a computed value (with its compute time and code, for its provenance)."""
        ...


async def run_compute(
    host: ComputeHost, compute: Callable[[], Any], flight: Flight, key: str, name: str
) -> Any:
    """Call `compute` (async, or plain in a worker thread), counting it."""
    flight.computing = True
    host.stats.computes += 1
    start = time.perf_counter()
    logger.debug("computing %s of %s", name, key)
    try:
        if is_async(compute):
            value = await compute()
        else:
            value = await anyio.to_thread.run_sync(call_boxed, compute)
            if isinstance(value, AwaitableResult):
                value = await value.awaitable
    except Exception:
        host.stats.failures += 1
        raise
    finally:
        host.stats.compute_seconds += time.perf_counter() - start
    return value


async def get_or_compute(
    host: ComputeHost,
    component: object,
    key: str,
    attribute_name: str,
    compute: Callable[[], Any],
    *,
    cross_process: bool = True,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    value_needed: bool = True,
    known_missing: bool = False,
    mode: MapMode | None = None,
) -> tuple[Any, Outcome]:
    """The value and how it came (`Outcome.HIT`, `COMPUTED` or `SHARED`).

    Without `value_needed` a stored entry is only checked for, not read (its value comes
    back as None); `known_missing` skips the first check (warm did it in bulk).
    """
    await anyio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller starts nothing
    while True:
        flight, leader = host.flights.claim(key, attribute_name)
        if leader:
            break
        await flight.wait()
        if flight.outcome is Outcome.HIT and value_needed and not flight.has_value:
            continue  # that caller only checked the entry exists: read it ourselves
        if flight.outcome in (Outcome.COMPUTED, Outcome.HIT):
            host.stats.shared += 1
            return flight.value, Outcome.SHARED
        if flight.outcome is Outcome.FAILED:
            host.stats.shared += 1
            assert flight.error is not None
            raise flight.error
        # the leader was cancelled before it computed: try again, maybe as the leader
    try:
        value = MISSING
        if not known_missing:
            value = await host.lookup(key, attribute_name, value_needed, mode, component, compute)
        if value is MISSING or type(value) is BadEntry:
            lock = host.lock(key, attribute_name, lock_timeout) if cross_process else no_lock()
            async with lock as locked:
                if locked and cross_process:
                    # another process may have stored it (or replaced a bad entry) while
                    # we waited for the lock
                    value = await host.lookup(
                        key, attribute_name, value_needed, mode, component, compute
                    )
                if value is MISSING or type(value) is BadEntry:
                    bad = value if type(value) is BadEntry else None
                    # Runs to its end even when this caller is cancelled (asyncio's own
                    # cancellation included): the others get the value, and the
                    # cancellation reaches this caller afterwards.
                    ending = await run_to_end(
                        _compute_and_put, host, flight, compute, component, key, attribute_name
                    )
                    if ending.error is None:
                        flight.finish(Outcome.COMPUTED, ending.value)
                        host.stats.misses += 1
                        if bad is not None:
                            recomputed_bad(host.stats, key, attribute_name, bad.error)
                    else:
                        flight.finish(Outcome.FAILED, None, ending.error)
                    value = ending.unwrap()
                    # a caller cancelled by anyio during the computation is cancelled now
                    await anyio.lowlevel.checkpoint_if_cancelled()
        if flight.outcome is None:
            flight.has_value = value_needed
            flight.finish(Outcome.HIT, value)
            host.stats.hits += 1
    except BaseException as error:
        if flight.outcome is None:
            computed = isinstance(error, Exception) and flight.computing
            flight.finish(Outcome.FAILED if computed else Outcome.ABANDONED, None, error)
        raise
    else:
        assert flight.outcome is not None
        return value, flight.outcome
    finally:
        host.flights.forget(key, attribute_name, flight)


def recomputed_bad(stats: Stats, key: str, attribute_name: str, error: Exception) -> None:
    """Count and log a bad entry that a computation has replaced."""
    stats.recomputed_bad += 1
    logger.warning("recomputed %s of %s, whose entry was bad: %s", attribute_name, key, error)


async def _compute_and_put(
    host: ComputeHost,
    flight: Flight,
    compute: Callable[[], Any],
    component: object,
    key: str,
    attribute_name: str,
) -> Any:
    started = time.perf_counter()
    value = await run_compute(host, compute, flight, key, attribute_name)
    seconds = time.perf_counter() - started
    await host.put(component, key, attribute_name, value, seconds, compute)
    return value
