"""The one process-wide event-loop thread that runs the async core for the blocking API.

An asyncio loop runs forever in a daemon thread, started on first use. Every blocking call
is one round trip to it (`asyncio.run_coroutine_threadsafe`), so blocking methods work in
plain scripts, in threads, and inside a running event loop (a Jupyter cell), where
``asyncio.run`` refuses to run. We measured anyio's `BlockingPortal` at about 2.6x the
cost of this round trip (130 µs against 50 µs here) for the same guarantees we need, so
the portal is this small module; the coroutines it runs still use anyio freely.

Lifecycle: started lazily; stopped at interpreter exit before non-daemon threads are
joined (so a back-end's worker thread cannot hang the exit); forgotten in a forked child,
which starts its own on first use (the parent's loop thread does not exist there).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar, TypeVarTuple

from ..errors import ConfigurationError
from . import user_warnings as _user_warnings
from .shutdown import at_shutdown

__all__ = ["call", "close_now", "shutdown", "track"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_THREAD_NAME = "adatastore-portal"


class Closeable(Protocol):
    async def aclose(self) -> None: ...


_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_stop: asyncio.Future[None] | None = None
_open: weakref.WeakSet[Closeable] = weakref.WeakSet()
_abandoned: list[object] = []
_closing: list[concurrent.futures.Future[None]] = []  # closes started by finalizers


def _serve(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    async def root() -> None:
        # A long-lived root task run by run_until_complete: anyio hangs its worker
        # threads on it, so they are reused across calls instead of started per call.
        global _stop
        _stop = loop.create_future()
        started.set()
        await _stop

    asyncio.set_event_loop(loop)
    serving = loop.create_task(root())
    while True:
        try:
            loop.run_until_complete(serving)
            break
        except (KeyboardInterrupt, SystemExit):
            # a task raised it (its caller gets it from the task's future); asyncio lets
            # it out of the loop, which stopped the thread and hung every later call
            continue
    # Cancel what is left and let it finish, as asyncio.run does (anyio's process-pool
    # task, for one, shuts its worker processes down when cancelled).
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


def _start() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            started = threading.Event()
            thread = threading.Thread(
                target=_serve, args=(loop, started), name=_THREAD_NAME, daemon=True
            )
            thread.start()
            started.wait()
            _loop, _thread = loop, thread
        return _loop


def call(function: Callable[[*Ts], Coroutine[Any, Any, T]], *args: *Ts) -> T:
    """Run ``await function(*args)`` on the loop thread and return its result.

    If the caller is interrupted (Ctrl-C), the coroutine is cancelled; what it had
    already handed to a worker thread still runs to its end.
    """
    if threading.current_thread() is _thread:
        raise ConfigurationError(
            "a blocking adatastore method was called from async code running on "
            "adatastore's own event loop; await the Async* store there instead"
        )
    loop = _loop or _start()
    held: _user_warnings.Held = []
    future = asyncio.run_coroutine_threadsafe(_holding(held, function, *args), loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise
    finally:
        _user_warnings.issue(held)  # from this thread: they name the user's line


async def _holding(
    held: _user_warnings.Held, function: Callable[[*Ts], Coroutine[Any, Any, T]], *args: *Ts
) -> T:
    _user_warnings.hold(held)
    return await function(*args)


def close_now(resource: Closeable, timeout: float = 30) -> None:
    """Close `resource` on the loop thread (from a finalizer, which may run on any
    thread): wait for it, unless this is the loop's own thread; shutdown waits then."""
    loop = _loop
    if loop is None or loop.is_closed():
        return
    try:
        future = asyncio.run_coroutine_threadsafe(resource.aclose(), loop)
    except RuntimeError:  # the loop has just stopped
        return
    if threading.current_thread() is _thread:
        _closing.append(future)
        return
    with contextlib.suppress(Exception, concurrent.futures.TimeoutError):
        future.result(timeout)


def track(resource: Closeable) -> None:
    """Close `resource` on the loop thread at shutdown if it is still alive then."""
    _open.add(resource)


def shutdown() -> None:
    """Close the tracked resources, then stop the loop thread. Safe to call twice."""
    global _loop, _thread, _stop
    with _lock:
        loop, thread, stop = _loop, _thread, _stop
        _loop = _thread = _stop = None
        resources = list(_open)
        _open.clear()
    if loop is None or thread is None or stop is None:
        return
    for closing in _closing:
        with contextlib.suppress(Exception, concurrent.futures.TimeoutError):
            closing.result(timeout=30)
    for resource in resources:
        future = asyncio.run_coroutine_threadsafe(resource.aclose(), loop)
        with contextlib.suppress(Exception, concurrent.futures.TimeoutError):
            future.result(timeout=30)
    with contextlib.suppress(Exception, concurrent.futures.TimeoutError):
        asyncio.run_coroutine_threadsafe(loop.shutdown_default_executor(), loop).result(30)
    loop.call_soon_threadsafe(stop.set_result, None)
    thread.join(timeout=30)
    if not thread.is_alive():
        loop.close()


def _forget_in_child() -> None:
    # The parent's loop thread does not exist in the child: stop using its loop. The old
    # objects are kept referenced, never finalized (closing that loop from here would
    # wait for a thread that is not there).
    global _loop, _thread, _stop, _lock
    _abandoned.append((_loop, _stop, list(_open)))
    _loop = _thread = _stop = None
    _open.clear()
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)
at_shutdown(shutdown)
