"""Living with ``os.fork()``: which process a resource belongs to, and a fork gate.

A forked child has a copy of everything the parent had, but only the thread that forked:
connection threads, event loops and executors of the parent are gone, and any lock a parent
thread held at that moment stays held forever. So a store remembers the `generation` it
opened its resources in; on its first use in a child it drops them (without closing:
closing a connection inherited from the parent would act on the parent's socket or
database) and opens its own.

SQLite keeps process-wide state (its mutexes, its table of open files) that a parent thread
may be using at the moment of a fork. `gate` keeps forks and SQLite calls apart: every
SQLite call adatastore makes runs inside ``with gate:``, and a fork waits (a few seconds at
most) until no such call is running, so the child never inherits SQLite in mid-call.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from types import TracebackType

__all__ = ["FORK_WAIT", "gate", "generation", "on_fork", "remember"]

FORK_WAIT = 10.0
"""Seconds a fork waits for SQLite calls in other threads to end (a call blocked on another
process's write lock may take longer: the fork then goes ahead)."""

_generation = 0


def generation() -> int:
    """A number that changes in every forked child (cheaper than comparing pids)."""
    return _generation


class _Gate:
    """Many threads inside at once; a fork waits until none is, and keeps them out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._condition = threading.Condition(self._lock)
        self._inside = 0
        self._forking = False

    # Entered around every SQLite call: the lock itself (a C context manager) is taken,
    # not the condition (whose __enter__ is Python); the condition only when waiting.
    def __enter__(self) -> None:
        with self._lock:
            while self._forking:
                self._condition.wait()
            self._inside += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._lock:
            self._inside -= 1
            if not self._inside and self._forking:
                self._condition.notify_all()

    def before_fork(self) -> None:
        with self._condition:
            self._forking = True
            self._condition.wait_for(lambda: not self._inside, timeout=FORK_WAIT)

    def after_fork_in_parent(self) -> None:
        with self._condition:
            self._forking = False
            self._condition.notify_all()

    def after_fork_in_child(self) -> None:
        # The parent's threads are gone, and the lock may have been held by one of them.
        self.__init__()  # type: ignore[misc]


gate = _Gate()
"""Run every SQLite call inside ``with gate:`` (see the module docstring)."""

_abandoned: list[object] = []
_child_lock = threading.Lock()


def child_lock() -> threading.Lock:
    """A lock for the first use in a child (new in every child: a parent's may be held)."""
    return _child_lock


_hooks: list[Callable[[], None]] = []


def remember(resource: object) -> None:
    """Keep `resource` referenced for the life of this process and never finalize it.

    For a child's copies of its parent's connections: their finalizers would close them,
    which would act on the parent's socket, database lock or WAL file.
    """
    _abandoned.append(resource)


def on_fork(hook: Callable[[], None]) -> None:
    """Call `hook` in every forked child, first thing (it must not take locks)."""
    _hooks.append(hook)


def _after_fork_in_child() -> None:
    global _generation, _child_lock
    _generation += 1
    _child_lock = threading.Lock()
    gate.after_fork_in_child()
    for hook in _hooks:
        hook()


os.register_at_fork(
    before=gate.before_fork,
    after_in_parent=gate.after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
