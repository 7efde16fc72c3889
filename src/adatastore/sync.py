"""The blocking API: any `AsyncDataStore`, used from plain code.

Back-ends whose I/O blocks anyway (files, SQLite, memory: `Backend.supports_blocking`)
run `store`, `store_many`, `retrieve`, `retrieve_many` and `contains` in the caller's
thread: the very operations the async API awaits (`adatastore._core.ops`), driven by the
blocking driver, with no event loop in between. Everything else — and every method of
the other back-ends — is one round trip to `adatastore._runtime.portal` (about 0.1 ms), which
awaits the async method on its own asyncio loop. This works in scripts, in threads and
inside a running event loop (Jupyter). In async code, await the ``Async*`` classes.

This module knows no back-end: each back-end's module defines its blocking class.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, Unpack

from ._compute.flights import DEFAULT_LOCK_TIMEOUT
from ._compute.spec import StoreSpec
from ._compute.warm_options import WarmKeywords, WarmOptions
from ._core import ops as _ops
from ._core.options import MapArgument
from ._core.policy import Duration, parse_duration
from ._runtime import portal as _portal
from .interface import AbstractDataStore
from .keygenerators import KeyGenerator
from .provenance import Explanation, Provenance
from .records import Entry, VerifyReport, WarmReport
from .stats import Stats
from .store import AsyncDataStore

__all__ = ["SyncDataStore"]

A = TypeVar("A", bound=AsyncDataStore)
T = TypeVar("T")


class SyncDataStore(AbstractDataStore, Generic[A]):
    """Blocking twin of any `AsyncDataStore`; the methods mirror the async ones.

    The store is opened at construction, so a bad configuration fails here and not at
    first use. It is closed by `close`, by ``with``, at interpreter exit, or when it is
    garbage-collected (the original API has no ``close``).
    """

    def __init__(self, async_store: A) -> None:
        self.async_store: A = async_store
        backend = async_store.backend
        backend.warn_unclosed = False  # the original API has no close(): no warning
        self._direct = backend.supports_blocking
        if self._direct:
            async_store._parts.lifecycle.blocking_ready()
        else:
            _portal.call(async_store.open)
        _portal.track(async_store)
        self._finalizer = weakref.finalize(self, _release, async_store, self._direct)
        self._finalizer.atexit = False

    def _run(self, operation: _ops.Operation[T]) -> T:
        """Run an operation of the core in this thread (direct back-ends only)."""
        try:
            self.async_store._parts.lifecycle.blocking_ready()
        except BaseException:
            operation.close()
            raise
        return _ops.drive_blocking(operation, self.async_store.backend)

    @property
    def _generate_key(self) -> KeyGenerator:
        """The key generator, under the original module's name for it."""
        return self.async_store.key_generator

    @property
    def key_generator(self) -> KeyGenerator:
        """The key generator of the underlying store."""
        return self.async_store.key_generator

    @property
    def stats(self) -> Stats:
        """Hits, misses, stores, computations, bytes and time of this store."""
        return self.async_store.stats

    def key_of(self, component: object) -> str:
        """Return the key `component` is filed under."""
        return self.async_store.key_of(component)

    def store(
        self, component: object, attribute_name: str, data: Any, *, expire: Duration = None
    ) -> None:
        """Store `data` as the attribute `attribute_name` of `component`, replacing any
        (`expire`: see `AsyncDataStore.store`)."""
        if self._direct:
            context, seconds = self.async_store._parts.context, parse_duration(expire, "expire")
            return self._run(
                _ops.store(context, component, attribute_name, data, None, None, seconds)
            )
        call = functools.partial(self.async_store.store, expire=expire)
        return _portal.call(call, component, attribute_name, data)

    def store_many(
        self, items: Iterable[tuple[object, str, Any]], *, expire: Duration = None
    ) -> None:
        """Store several ``(component, attribute_name, data)`` in one call."""
        if self._direct:
            seconds = parse_duration(expire, "expire")
            return self._run(_ops.store_many(self.async_store._parts.context, items, seconds))
        return _portal.call(
            functools.partial(self.async_store.store_many, expire=expire), list(items)
        )

    def retrieve(
        self,
        component: object,
        attribute_name: str,
        default: Any = None,
        *,
        mmap: MapArgument = None,
    ) -> Any:
        """Return the stored attribute, or `default` (None) when nothing is stored;
        `mmap` maps arrays as `AsyncDataStore.retrieve` says."""
        context = self.async_store._parts.context
        mode = context.map_mode(mmap)
        if self._direct:
            return self._run(_ops.retrieve(context, component, attribute_name, default, mode))
        return _portal.call(
            functools.partial(
                self.async_store.retrieve, component, attribute_name, default, mmap=mode or False
            )
        )

    def retrieve_many(
        self,
        requests: Iterable[tuple[object, str]],
        default: Any = None,
        *,
        mmap: MapArgument = None,
    ) -> list[Any]:
        """Retrieve several ``(component, attribute_name)`` in one call, in order."""
        context = self.async_store._parts.context
        mode = context.map_mode(mmap)
        if self._direct:
            return self._run(_ops.retrieve_many(context, requests, default, mode))
        return _portal.call(
            functools.partial(
                self.async_store.retrieve_many, list(requests), default, mmap=mode or False
            )
        )

    def contains(self, component: object, attribute_name: str) -> bool:
        """Whether the attribute of `component` is stored."""
        if self._direct:
            return self._run(
                _ops.contains(self.async_store._parts.context, component, attribute_name)
            )
        return _portal.call(self.async_store.contains, component, attribute_name)

    def delete(self, component: object, attribute_name: str | None = None) -> int:
        """Delete one attribute of `component`, or all of them; return how many went."""
        return _portal.call(self.async_store.delete, component, attribute_name)

    def list_contents(self) -> list[Entry]:
        """Describe every stored entry, sorted by key then attribute name."""
        return _portal.call(self.async_store.list_contents)

    def get_or_compute(
        self,
        component: object,
        attribute_name: str,
        compute: Callable[[], Any],
        *,
        cross_process: bool = True,
        lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
        mmap: MapArgument = None,
    ) -> Any:
        """Return the stored attribute, or compute, store and return it (computed once,
        even when threads or processes ask at the same time); see
        `AsyncDataStore.get_or_compute`.
        """
        return _portal.call(
            functools.partial(
                self.async_store.get_or_compute,
                component,
                attribute_name,
                compute,
                cross_process=cross_process,
                lock_timeout=lock_timeout,
                mmap=mmap,
            )
        )

    def warm(
        self,
        components: Iterable[object],
        attribute_name: str,
        compute: Callable[[Any], Any],
        **options: Unpack[WarmKeywords],
    ) -> WarmReport:
        """Store `attribute_name` for every component; see `AsyncDataStore.warm`."""
        WarmOptions.of(options)  # a misspelt keyword fails here, in the caller's thread
        return _portal.call(
            functools.partial(self.async_store.warm, components, attribute_name, compute, **options)
        )

    @property
    def spec(self) -> StoreSpec | None:
        """How another process opens this store; see `AsyncDataStore.spec`."""
        return self.async_store.spec

    def explain(self, component: object, attribute_name: str, *, limit: int = 3) -> Explanation:
        """Where a stored entry came from, or why there is none; see
        `AsyncDataStore.explain`."""
        return _portal.call(
            functools.partial(self.async_store.explain, component, attribute_name, limit=limit)
        )

    def provenance(self, component: object, attribute_name: str) -> Provenance | None:
        """The provenance of a stored entry; see `AsyncDataStore.provenance`."""
        return _portal.call(self.async_store.provenance, component, attribute_name)

    def verify(
        self, *, repair: bool = False, progress: Callable[[int, int], None] | None = None
    ) -> VerifyReport:
        """Check every entry's checksum and signature; see `AsyncDataStore.verify`."""
        return _portal.call(
            functools.partial(self.async_store.verify, repair=repair, progress=progress)
        )

    def cleanup(self, *, older_than: float = 3600.0) -> int:
        """Remove leftovers of interrupted writes; see `AsyncDataStore.cleanup`."""
        return _portal.call(functools.partial(self.async_store.cleanup, older_than=older_than))

    def close(self) -> None:
        """Close the store; closing twice is harmless."""
        self._finalizer.detach()
        if self._direct:
            self.async_store._parts.lifecycle.blocking_close()
        else:
            _portal.call(self.async_store.aclose)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self.async_store!r}>"


def _release(store: AsyncDataStore, direct: bool) -> None:
    """Close a blocking store's async store when the blocking one is collected unclosed."""
    with contextlib.suppress(Exception):
        if direct:
            store._parts.lifecycle.blocking_close()
        else:
            _portal.close_now(store)


def _interruptible(method: Callable[..., T]) -> Callable[..., T]:
    """`method`, whose Ctrl-C reaches the caller with a traceback of two lines: the
    caller's own, then the method called — not the loop thread's future, the connection
    thread's lock or SQLite's wait where the signal happened to find the call (a new
    `KeyboardInterrupt`, raised here; the interrupted work is cancelled or finishes on
    its own, as before)."""

    @functools.wraps(method)
    def interrupted_here(*args: Any, **kwargs: Any) -> T:
        try:
            return method(*args, **kwargs)
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None

    return interrupted_here


for _name in (
    "store",
    "store_many",
    "retrieve",
    "retrieve_many",
    "contains",
    "delete",
    "list_contents",
    "get_or_compute",
    "warm",
    "explain",
    "provenance",
    "verify",
    "cleanup",
):
    setattr(SyncDataStore, _name, _interruptible(getattr(SyncDataStore, _name)))


_NAMED_HERE_IN_0_2 = ("MemoryDataStore", "SQLiteDataStore", "ShelveDataStore")


def __getattr__(name: str) -> Any:
    """0.2.0 also named the blocking stores here (``from adatastore.sync import
    ShelveDataStore``); they live in ``adatastore._stores``, above this module, and are
    imported only when an old import path asks for them (PEP 562)."""
    if name not in _NAMED_HERE_IN_0_2:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ._stores import files, memory, sqlite

    return next(getattr(m, name) for m in (files, memory, sqlite) if name in m.__all__)
