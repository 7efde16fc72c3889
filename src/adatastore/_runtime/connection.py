"""A database connection owned by one daemon thread, callable from any thread or event loop.

SQLite connections must not be used by two threads at once, and a write transaction must
stay on one connection from BEGIN to COMMIT. Each `ConnectionThread` owns one
``sqlite3.Connection`` and runs the functions it is given, one at a time, each with the
connection as its argument. A function is a whole unit of work (a statement, or a
transaction from BEGIN to COMMIT or ROLLBACK): once submitted it runs to its end whatever
happens to the caller (a cancelled task, Ctrl-C), so no transaction is ever left open
and the unit decides its own clean-up.

Callers wait in the way that suits them: `run` blocks the calling thread (one hand-off,
no event loop involved), `run_here` runs a short unit in the calling thread with the
connection's thread held off (the blocking API's small writes: no hand-off), `arun`
awaits on whichever event loop is running (asyncio or trio; each call looks its loop up,
so one connection serves several loops). This is what aiosqlite does, minus what we
cannot use: its thread is not a daemon (a store never closed hangs the interpreter's
exit), it accepts only single statements, and its futures belong to the loop that made
them.

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

from . import forks as _forks
from .waiting import Waiter

__all__ = ["ConnectionThread", "is_busy"]

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
        self._lock = threading.Lock()  # one user of the connection at a time (`run_here`)
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
                    with self._lock, _forks.gate:
                        self._connection.close()
                    self._connection = None
                return
            try:
                with self._lock, _forks.gate:
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

    def run_here(self, function: Work[T], busy_timeout: float) -> T:
        """Run `function(connection)` in the calling thread, the connection's own thread
        held off meanwhile: for the blocking API's short units, whose hand-off to the
        thread and back cost more than the unit (a 1 KB store: 270 -> 150 µs here).

        It must be a unit that does nothing when SQLite answers busy (its statement or its
        BEGIN IMMEDIATE refused). It is tried once without waiting for SQLite's write
        lock; when another writer holds it, the unit goes to the thread as with `run`,
        and the caller waits there, where Ctrl-C reaches it at once (SQLite's own wait
        cannot be interrupted). A transaction still open after the unit (Ctrl-C inside
        its clean-up) is rolled back here.
        """
        with self._lock, _forks.gate:
            connection = self._connection
            if connection is None:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            connection.execute("PRAGMA busy_timeout = 0")
            try:
                return function(connection)
            except sqlite3.OperationalError as error:
                if not is_busy(error):
                    raise
            finally:
                try:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                finally:  # even when Ctrl-C lands in the rollback: a connection left
                    # with no busy timeout fails every later write ("database is locked")
                    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        return self.run(function)  # another writer holds SQLite's lock: wait as `run` does

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


def is_busy(error: sqlite3.Error) -> bool:
    """Whether SQLite refused for a lock another connection holds (SQLITE_BUSY)."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY
