"""A store's life: opened once (at first use), closed once, started again after a fork.

Kept apart from the facade so that the async API and the blocking layer (`sync.py`) open,
check and close a store the same way.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

from .._runtime import forks as _forks
from ..backend import Backend
from ..errors import ConfigurationError, StoreClosedError
from ..stats import logger
from . import ops as _ops
from .limits import Limiter

__all__ = ["Lifecycle"]


class Lifecycle:
    """Whether a back-end is open or closed, and in which process it was opened."""

    __slots__ = ("_backend", "_on_fork", "_owner", "closed", "generation", "limiter", "opened")

    def __init__(
        self,
        backend: Backend,
        owner: object,
        on_fork: Callable[[], None],
        limiter: Limiter | None,
    ) -> None:
        """`owner` names the store in errors (held weakly, as `on_fork` must be: a cycle
        through the store would keep an unclosed store, and its connections, alive until
        the cycle collector runs, and hide its `ResourceWarning`); `on_fork` drops its
        in-process state; `limiter` (a limited store's) writes its last read notes at
        close."""
        self._backend = backend
        self._owner = weakref.ref(owner)
        self._on_fork = on_fork
        self.opened = False
        self.closed = False
        self.generation = _forks.generation()
        self.limiter = limiter

    def check(self) -> None:
        """Raise `StoreClosedError` when closed; in a forked child, first drop the
        parent's resources (first use only: the back-end opens again)."""
        if self.generation != _forks.generation():
            with _forks.child_lock():
                if self.generation != _forks.generation():
                    self._on_fork()
                    self._backend.forget()
                    self.opened = False
                    self.generation = _forks.generation()
        if self.closed:
            raise StoreClosedError(f"{self._owner()!r} is closed")

    def check_event_loop(self) -> None:
        """An asyncio-only back-end awaited under another event loop: say so."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                f"{type(self._owner()).__name__} runs on asyncio only (its I/O library needs "
                "an asyncio event loop), but it was awaited under another event loop "
                "(trio?); run it under asyncio, or use the blocking class, which runs on "
                "its own asyncio thread"
            ) from None

    async def ready(self) -> None:
        """Check, and open the back-end if it is not open (the async path)."""
        self.check()
        if self._backend.requires_asyncio:
            self.check_event_loop()
        if not self.opened:
            await self._backend.open()
            self.opened = True

    def blocking_ready(self) -> None:
        """Check, and open the back-end if it is not open (the blocking path)."""
        self.check()
        if not self.opened:
            self._backend.blocking_open()
            self.opened = True

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.limiter is not None and self._ours():
                try:
                    await _ops.drive(self.limiter.flush(), self._backend)
                except Exception as error:  # the store is closing anyway
                    logger.debug("read times not written at close: %s", error)
            await self._backend.close()

    def blocking_close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.limiter is not None and self._ours():
                try:
                    _ops.drive_blocking(self.limiter.flush(), self._backend)
                except Exception as error:
                    logger.debug("read times not written at close: %s", error)
            self._backend.blocking_close()

    def _ours(self) -> bool:
        """Whether the back-end was opened by this process (not a forked parent's)."""
        return self.opened and self.generation == _forks.generation()
