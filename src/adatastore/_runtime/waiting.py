"""Waiting that works on any event loop and from any thread, and work that cannot be cut.

`Waiter`: something a task awaits on its own event loop (asyncio or trio) and any thread
settles. anyio's `Event` belongs to the loop that made it; a store shared by several
loops (one per thread of a web server, or ``asyncio.run`` twice) needs this instead.

`run_to_end`: run a coroutine to its end even when the caller is cancelled, then hand the
cancellation back. anyio's shielded scopes stop anyio's cancellation only; asyncio's own
(``Task.cancel()``, ``asyncio.timeout``, a failing ``TaskGroup`` sibling, Ctrl-C in
``asyncio.run``) goes through them, so on asyncio the work runs in a task of its own that
the caller waits for.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel

__all__ = ["Ending", "Waiter", "run_to_end"]

T = TypeVar("T")


class Waiter:
    """Await `wait()` on the running loop; call `wake()` from any thread, once or more."""

    __slots__ = ("_event", "_future", "_loop", "_thread", "_token")

    def __init__(self) -> None:
        self._thread = threading.get_ident()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: trio
            self._loop = None
        if self._loop is not None:
            self._future: asyncio.Future[None] = self._loop.create_future()
        else:
            import trio

            self._token = trio.lowlevel.current_trio_token()
            self._event = trio.Event()

    def wake(self) -> None:
        """Let the waiting task go on (a no-op once done, or when its loop has ended)."""
        here = threading.get_ident() == self._thread
        try:
            if self._loop is not None:
                if here:
                    _settle(self._future)
                else:
                    self._loop.call_soon_threadsafe(_settle, self._future)
            elif here:
                self._event.set()
            else:
                self._token.run_sync_soon(self._event.set)
        except RuntimeError:  # that loop has ended: nobody waits any more
            pass

    async def wait(self) -> None:
        if self._loop is not None:
            await self._future
        else:
            await self._event.wait()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(slots=True)
class Ending(Generic[T]):
    """How work run by `run_to_end` ended, and whether its caller was cancelled meanwhile."""

    value: T | None = None
    error: BaseException | None = None
    cancelled: BaseException | None = None
    """The cancellation the caller received while it waited (asyncio's own)."""

    def unwrap(self) -> T:
        """The value; or raise the cancellation, else the work's exception."""
        if self.cancelled is not None:
            raise self.cancelled from self.error
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


async def run_to_end(function: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> Ending[T]:
    """Run ``await function(*args)`` to its end whatever happens to the caller.

    The caller does its bookkeeping with what the `Ending` holds, then calls `unwrap`,
    which raises the cancellation it received meanwhile, or the work's exception.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # trio: a shielded scope stops every cancellation there
        with anyio.CancelScope(shield=True):
            try:
                return Ending(await function(*args))
            except Exception as error:
                return Ending(error=error)
    task = loop.create_task(function(*args))
    cancelled: BaseException | None = None
    with anyio.CancelScope(shield=True):  # anyio's cancellation waits until the end
        while not task.done():
            try:
                await asyncio.wait((task,))
            except asyncio.CancelledError as cancellation:  # asyncio's own: the task goes on
                cancelled = cancellation
    outcome = task.exception()
    if outcome is not None and not isinstance(outcome, Exception):
        raise outcome  # KeyboardInterrupt, SystemExit: nothing to wait for
    return Ending(None if outcome is not None else task.result(), outcome, cancelled)
