"""The blocking API: the async stores, driven through one background event loop.

Each blocking method is one round trip to `adatastore._portal` (about 0.1 ms), which runs
the async method on its asyncio loop. This works in scripts, in threads and inside a
running event loop (Jupyter). In async code, await the ``Async*`` classes instead.

Back-ends whose I/O is blocking anyway (the files back-end) skip the loop for `store`,
`retrieve`, `retrieve_many` and `contains`: the same core runs in the caller's thread.
SQLite skips it for the reads (a connection per calling thread, beside the loop's writer).
"""

from __future__ import annotations

import contextlib
import functools
import os
import weakref
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from . import _portal
from .backends.files import AsyncShelveDataStore
from .backends.memory import AsyncMemoryDataStore
from .backends.sqlite import AsyncSQLiteDataStore
from .interface import AbstractDataStore
from .keygenerators import KeyGenerator
from .provenance import Explanation
from .serializers import Serializer
from .signing import SigningKey
from .stats import Stats
from .store import AsyncDataStore, Entry, VerifyReport, WarmReport

__all__ = ["MemoryDataStore", "SQLiteDataStore", "ShelveDataStore", "SyncDataStore"]

A = TypeVar("A", bound=AsyncDataStore)


class SyncDataStore(AbstractDataStore, Generic[A]):
    """Blocking twin of any `AsyncDataStore`; the methods mirror the async ones.

    The store is opened at construction, so a bad configuration fails here and not at
    first use. It is closed by `close`, by ``with``, or at interpreter exit.
    """

    def __init__(self, async_store: A) -> None:
        self.async_store: A = async_store
        async_store.warn_unclosed = False  # the original API has no close(): no warning
        # Back-ends with blocking I/O (files) serve store/retrieve/contains in the caller's
        # thread; the others go through adatastore's loop thread.
        self._direct = async_store.supports_blocking
        self._direct_reads = self._direct or async_store.supports_blocking_reads
        if self._direct:
            async_store.open_blocking()
        else:
            _portal.call(async_store.open)
        _portal.track(async_store)
        # The original API has no close(): a store nobody closes lets its files and
        # connections go when it is garbage-collected (and at exit, by the portal).
        self._finalizer = weakref.finalize(self, _release, async_store, self._direct)
        self._finalizer.atexit = False

    @property
    def _generate_key(self) -> KeyGenerator:
        """The key generator, under the original module's name for it."""
        return self.async_store.key_generator

    @property
    def key_generator(self) -> KeyGenerator:
        """The key generator of the underlying store."""
        return self.async_store.key_generator

    def key_of(self, component: object) -> str:
        """Return the key `component` is filed under."""
        return self.async_store.key_of(component)

    def store(self, component: object, attribute_name: str, data: Any) -> None:
        """Store `data` as the attribute `attribute_name` of `component`, replacing any."""
        if self._direct:
            self.async_store.store_blocking(component, attribute_name, data)
        else:
            _portal.call(self.async_store.store, component, attribute_name, data)

    def retrieve(self, component: object, attribute_name: str, default: Any = None) -> Any:
        """Return the stored attribute, or `default` (None) when nothing is stored."""
        if self._direct_reads:
            return self.async_store.retrieve_blocking(component, attribute_name, default)
        return _portal.call(self.async_store.retrieve, component, attribute_name, default)

    def store_many(self, items: Iterable[tuple[object, str, Any]]) -> None:
        """Store several ``(component, attribute_name, data)`` in one call."""
        _portal.call(self.async_store.store_many, list(items))

    def retrieve_many(
        self, requests: Iterable[tuple[object, str]], default: Any = None
    ) -> list[Any]:
        """Retrieve several ``(component, attribute_name)`` in one call, in order."""
        if self._direct_reads:
            return self.async_store.retrieve_many_blocking(requests, default)
        return _portal.call(self.async_store.retrieve_many, list(requests), default)

    def contains(self, component: object, attribute_name: str) -> bool:
        """Whether the attribute of `component` is stored."""
        if self._direct_reads:
            return self.async_store.contains_blocking(component, attribute_name)
        return _portal.call(self.async_store.contains, component, attribute_name)

    def delete(self, component: object, attribute_name: str | None = None) -> int:
        """Delete one attribute of `component`, or all of them; return how many went."""
        return _portal.call(self.async_store.delete, component, attribute_name)

    def list_contents(self) -> list[Entry]:
        """Describe every stored entry, sorted by key then attribute name."""
        return _portal.call(self.async_store.list_contents)

    @property
    def stats(self) -> Stats:
        """Hits, misses, stores, computations, bytes and time of this store."""
        return self.async_store.stats

    def explain(self, component: object, attribute_name: str, *, limit: int = 3) -> Explanation:
        """Where a stored entry came from, or why there is none; see
        `AsyncDataStore.explain`."""
        return _portal.call(
            functools.partial(self.async_store.explain, component, attribute_name, limit=limit)
        )

    def get_or_compute(
        self,
        component: object,
        attribute_name: str,
        compute: Callable[[], Any],
        *,
        cross_process: bool = True,
        lock_timeout: float | None = 3600.0,
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
            )
        )

    def warm(
        self,
        components: Iterable[object],
        attribute_name: str,
        compute: Callable[[Any], Any],
        **options: Any,
    ) -> WarmReport:
        """Store `attribute_name` for every component; see `AsyncDataStore.warm`."""
        return _portal.call(
            functools.partial(
                self.async_store.warm, list(components), attribute_name, compute, **options
            )
        )

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
            self.async_store.close_blocking()
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
            store.close_blocking()
        else:
            _portal.close_now(store)


class ShelveDataStore(SyncDataStore[AsyncShelveDataStore]):
    """Blocking files store under `root_dir`: the original module's ``ShelveDataStore``.

    See `AsyncShelveDataStore` for the layout and the `durable` option.
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        *,
        durable: bool = False,
        signing_key: SigningKey | None = None,
        verify_on_read: bool = True,
        create: bool = True,
    ) -> None:
        self._root_dir = os.fspath(root_dir)
        """`root_dir` as given: the original module's attribute, which its scripts read."""
        super().__init__(
            AsyncShelveDataStore(
                root_dir,
                key_generator,
                serializer,
                durable=durable,
                signing_key=signing_key,
                verify_on_read=verify_on_read,
                create=create,
            )
        )

    @property
    def root_dir(self) -> str:
        """The directory the store lives in (absolute)."""
        return str(self.async_store.root_dir)


class SQLiteDataStore(SyncDataStore[AsyncSQLiteDataStore]):
    """Blocking store in one SQLite file: the embedded default.

    See `AsyncSQLiteDataStore` for the options. Its connections live on adatastore's
    loop thread; `close` (or the end of the interpreter) closes them.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        *,
        durable: bool = False,
        busy_timeout: float = 60.0,
        signing_key: SigningKey | None = None,
        verify_on_read: bool = True,
        create: bool = True,
    ) -> None:
        super().__init__(
            AsyncSQLiteDataStore(
                path,
                key_generator,
                serializer,
                durable=durable,
                busy_timeout=busy_timeout,
                signing_key=signing_key,
                verify_on_read=verify_on_read,
                create=create,
            )
        )

    @property
    def path(self) -> str:
        """The database file (absolute)."""
        return str(self.async_store.path)


class MemoryDataStore(SyncDataStore[AsyncMemoryDataStore]):
    """Blocking in-process store, for tests and throw-away caches."""

    def __init__(
        self,
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        *,
        signing_key: SigningKey | None = None,
        verify_on_read: bool = True,
    ) -> None:
        super().__init__(
            AsyncMemoryDataStore(
                key_generator, serializer, signing_key=signing_key, verify_on_read=verify_on_read
            )
        )
