"""The one process-wide blocking portal that runs the async core for the blocking API.

An asyncio event loop in a daemon thread, started on first use. Every blocking call is one
round trip to it, so blocking methods work from plain scripts, from threads, and from
inside a running event loop (a Jupyter cell), where ``asyncio.run`` refuses to run.

Lifecycle: started lazily; stopped at interpreter exit before non-daemon threads are
joined (so an open connection thread cannot hang the exit); forgotten in a forked child,
which starts its own on first use (an inherited portal would hang the child forever).
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar, TypeVarTuple, Unpack

from anyio.from_thread import BlockingPortal, start_blocking_portal

from .errors import ConfigurationError

__all__ = ["call", "shutdown", "track"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_THREAD_NAME = "adatastore-portal"

_lock = threading.Lock()
_portal: BlockingPortal | None = None
_context: AbstractContextManager[BlockingPortal] | None = None
_thread: threading.Thread | None = None
_open: weakref.WeakSet[Closeable] = weakref.WeakSet()


class Closeable(Protocol):
    async def aclose(self) -> None: ...


def _get() -> BlockingPortal:
    global _portal, _context, _thread
    portal = _portal
    if portal is not None:
        return portal
    with _lock:
        if _portal is None:
            context = start_blocking_portal("asyncio", name=_THREAD_NAME)
            _portal = context.__enter__()
            _context = context
            _thread = _portal.call(threading.current_thread)
        return _portal


def call(function: Callable[[Unpack[Ts]], Awaitable[T]], *args: Unpack[Ts]) -> T:
    """Run ``await function(*args)`` on the portal's loop and return its result."""
    if threading.current_thread() is _thread:
        raise ConfigurationError(
            "a blocking adatastore method was called from async code running on "
            "adatastore's own event loop; await the Async* store there instead"
        )
    return _get().call(function, *args)


def track(resource: Closeable) -> None:
    """Close `resource` on the portal's loop at shutdown if it is still alive then."""
    _open.add(resource)


def shutdown() -> None:
    """Run the registered closers, then stop the portal thread. Safe to call twice."""
    global _portal, _context, _thread
    with _lock:
        portal, context = _portal, _context
        _portal = _context = _thread = None
        resources = list(_open)
        _open.clear()
    if portal is None or context is None:
        return
    for resource in resources:
        try:
            portal.call(resource.aclose)
        except Exception:  # noqa: PERF203 - keep closing the rest at exit
            continue
    context.__exit__(None, None, None)


_abandoned: list[object] = []


def _forget_in_child() -> None:
    # The parent's loop thread does not exist in the child: stop using its portal. The old
    # objects are kept referenced, never finalized: closing the portal's context manager
    # would wait for the parent's thread forever.
    global _portal, _context, _thread, _lock
    _abandoned.append((_portal, _context, list(_open)))
    _portal = _context = _thread = None
    _open.clear()
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)

# threading._register_atexit runs before non-daemon threads are joined; plain atexit runs
# after, which is too late when a back-end keeps a non-daemon worker thread alive.
_register = getattr(threading, "_register_atexit", None)
if _register is not None:
    _register(shutdown)
else:  # pragma: no cover - every CPython >= 3.9 has it
    atexit.register(shutdown)
