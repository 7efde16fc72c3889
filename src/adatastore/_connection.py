"""A database connection owned by one daemon thread, callable from any thread or event loop.

SQLite connections must not be used by two threads at once, and a write transaction must
stay on one connection from BEGIN to COMMIT. Each `ConnectionThread` owns one
``sqlite3.Connection`` and runs the functions it is given, one at a time, each with the
connection as its argument. A function is a whole unit of work (a statement, or a
transaction from BEGIN to COMMIT or ROLLBACK): once submitted it runs to its end whatever
happens to the caller (a cancelled task, Ctrl-C), so no transaction is ever left open
and the unit decides its own clean-up.

Callers wait in the way that suits them: `run` blocks the calling thread (the blocking
API: one hand-off, no event loop involved), `arun` awaits on whichever event loop is
running (asyncio or trio; each call looks its loop up, so one connection serves several
loops). This is what aiosqlite does, minus what we cannot use: its thread is not a daemon
(a store never closed hangs the interpreter's exit), it accepts only single statements,
and its futures belong to the loop that made them.

The thread is a daemon: a process exits whatever its connections are doing. In a forked
child the thread does not exist: `ConnectionThread` objects are per process (`alive`), and
the store drops a parent's ones without touching them.
"""

from __future__ import annotations

import _thread
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from . import _forks
from ._waiting import Waiter

__all__ = ["ConnectionThread"]

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]


class _Call(Generic[T]):
    """One submitted function and what came of it."""

    __slots__ = ("error", "function", "notify", "value")

    def __init__(self, function: Work[T], notify: Callable[[], object]) -> None:
        self.function = function
        self.notify = notify
        self.value: Any = None
        self.error: BaseException | None = None

    def result(self) -> T:
        if self.error is not None:
            error, self.error = self.error, None  # no reference cycle through the traceback
            raise error
        return self.value  # type: ignore[no-any-return]


class ConnectionThread:
    """One connection, made by `connect` in its own daemon thread (see the module)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._queue: queue.SimpleQueue[_Call[Any] | None] = queue.SimpleQueue()
        self._generation = _forks.generation()
        self._connection: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        try:
            self._connection = self.run(lambda _: connect())
        except BaseException:
            self._queue.put(None)
            raise

    @property
    def alive(self) -> bool:
        """Whether this process owns the thread (False in a forked child)."""
        return self._generation == _forks.generation() and self._thread.is_alive()

    def _serve(self) -> None:
        while True:
            call = self._queue.get()
            if call is None:
                if self._connection is not None:
                    with _forks.gate:
                        self._connection.close()
                    self._connection = None
                return
            try:
                with _forks.gate:
                    call.value = call.function(self._connection)  # type: ignore[arg-type]
            except BaseException as error:
                call.error = error
            with contextlib.suppress(Exception):  # the waiter's loop has ended
                call.notify()
            del call

    def run(self, function: Work[T]) -> T:
        """Run `function(connection)` in the thread; block until it is done.

        Ctrl-C interrupts the wait, not the function (which completes on its own).
        """
        done = _thread.allocate_lock()
        done.acquire()
        call = _Call(function, done.release)
        self._queue.put(call)
        done.acquire()
        return call.result()

    async def arun(self, function: Work[T]) -> T:
        """Run `function(connection)` in the thread; await it on the running event loop.

        A cancelled caller stops waiting; the function still completes on its own.
        """
        waiter = Waiter()
        call = _Call(function, waiter.wake)
        self._queue.put(call)
        await waiter.wait()
        return call.result()

    def close(self) -> None:
        """Close the connection after the calls already submitted; do not wait."""
        if self._generation == _forks.generation():
            self._queue.put(None)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (after `close`)."""
        if self._generation == _forks.generation():
            self._thread.join(timeout)
