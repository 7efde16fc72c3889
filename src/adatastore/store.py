"""`AsyncDataStore`: the user's API, over a back-end it holds.

The facade checks and delegates: it opens its back-end at first use (`Lifecycle`), runs
the direct operations of the operation core (`_ops`: names checked, keys made, values
sealed or decoded, stats counted) against the back-end, and hands computations to
``_compute``/``_warm``, explanations to ``_explain`` and checks to ``_verify``. A back-end
(`adatastore.backend.Backend`) only moves records as bytes. The named classes
(`AsyncSQLiteDataStore(path)`, ...) are this facade with their back-end made for them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, ClassVar, Self, Unpack

from ._compute import sweep as _sweep
from ._compute.flights import DEFAULT_LOCK_TIMEOUT, get_or_compute
from ._compute.host import assemble
from ._compute.warm_options import WarmKeywords, WarmOptions
from ._core import explain as _explain
from ._core import legacy as _legacy
from ._core import ops as _ops
from ._core import verify as _verify
from ._core.identity import MAX_ATTRIBUTE_NAME_LENGTH, check_attribute_name
from ._core.options import MapArgument, Settings, StoreOptions
from ._core.policy import Duration, parse_duration
from ._facade.settings import StoreSettings
from ._runtime.user_warnings import relaying
from .backend import Backend
from .errors import ConfigurationError
from .keygenerators import KeyGenerator, canonical_hash
from .provenance import Explanation, Provenance
from .records import (
    ComponentRecord,
    DamagedEntry,
    Entry,
    VerifyReport,
    WarmProgress,
    WarmReport,
    json_text,
    storable_text,
)
from .serializers import Serializer
from .stats import Stats

__all__ = [
    "MAX_ATTRIBUTE_NAME_LENGTH",
    "AsyncDataStore",
    "ComponentRecord",
    "DamagedEntry",
    "Entry",
    "StoreOptions",
    "VerifyReport",
    "WarmProgress",
    "WarmReport",
    "check_attribute_name",
    "json_text",
    "storable_text",
]


class AsyncDataStore(StoreSettings):
    """Awaitable `store`/`retrieve` keyed by component identity, over a `Backend`.

    ``AsyncDataStore(backend)`` works with any back-end; the named classes
    (`AsyncSQLiteDataStore`, `AsyncShelveDataStore`, ...) make theirs from a path.
    """

    __legacy_hooks: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if _legacy.defines_hooks(cls) and not cls.__legacy_hooks:
            cls.__legacy_hooks = True
            warnings.warn(
                f"{cls.__qualname__} is a back-end written the adatastore 0.2 way (a "
                "subclass overriding write_raw, ...): it works for this release; write it "
                "as an adatastore.backend.Backend and pass it to AsyncDataStore(backend)",
                DeprecationWarning,
                stacklevel=2,
            )

    def __init__(
        self,
        backend: Backend | None = None,
        *legacy_arguments: Any,
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        **options: Unpack[StoreOptions],
    ) -> None:
        """`options`: `StoreOptions` (signing, compression, mapping, policy, limits).

        (`legacy_arguments`: a 0.2-style subclass passes its key generator and
        serializer positionally, in `backend`'s place.)
        """
        if self.__legacy_hooks:
            positional = [backend, *legacy_arguments, None, None]
            key_generator = positional[0] if positional[0] is not None else key_generator
            serializer = positional[1] if positional[1] is not None else serializer
            backend = _legacy.LegacyBackend(self)
        elif not isinstance(backend, Backend) or legacy_arguments:
            raise ConfigurationError(
                "AsyncDataStore(backend, *, key_generator=..., serializer=..., ...) needs an "
                f"adatastore.backend.Backend, not {type(backend).__name__}"
            )
        settings, signer = Settings.parse(options)
        self.backend: Backend = backend
        """Where the records live (see `adatastore.backend`)."""
        self.stats = Stats()
        generator = canonical_hash if key_generator is None else key_generator
        self._parts = assemble(backend, self, generator, serializer, settings, signer, self.stats)
        """The machinery under the API, private to the package: the operations' context
        (identity, codec, policy, stats), the compute host and the lifecycle. The blocking
        layer, the CLI and the named stores reach it here (one typed seam, as psycopg's
        ``Connection`` keeps its adapters); a user's autocompletion shows the API only."""

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> Self:
        """Prepare the store now instead of at first use; returns the store."""
        await self._parts.lifecycle.ready()
        return self

    async def aclose(self) -> None:
        """Close the store; later calls raise `StoreClosedError`. Closing twice is harmless."""
        await self._parts.lifecycle.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def __drive(self, operation: _ops.Operation[Any]) -> Any:
        """Open if needed, then run `operation` (mangled: 0.2 subclasses define ``_run``)."""
        try:
            await self._parts.lifecycle.ready()
        except BaseException:
            operation.close()
            raise
        return await _ops.drive(operation, self.backend)

    # -- the direct operations ------------------------------------------------------------------

    def key_of(self, component: object) -> str:
        """Return the key this store files `component` under."""
        return self._parts.context.identity.key(component)

    async def store(
        self, component: object, attribute_name: str, data: Any, *, expire: Duration = None
    ) -> None:
        """Store `data` as the attribute `attribute_name` of `component`, replacing any.
        With `expire` (seconds, or ``"12h"``) reads miss it after that long."""
        seconds = None if expire is None else parse_duration(expire, "expire")
        await self.__drive(
            _ops.store(self._parts.context, component, attribute_name, data, None, None, seconds)
        )

    async def store_many(
        self, items: Iterable[tuple[object, str, Any]], *, expire: Duration = None
    ) -> None:
        """Store several ``(component, attribute_name, data)`` at once (`expire`: `store`).

        Everything is checked and serialized first: one bad item raises and nothing is
        stored. Back-ends write them in one go (one transaction on SQLite and Django).
        """
        seconds = parse_duration(expire, "expire")
        await self.__drive(_ops.store_many(self._parts.context, items, seconds))

    async def retrieve(
        self,
        component: object,
        attribute_name: str,
        default: Any = None,
        *,
        mmap: MapArgument = None,
    ) -> Any:
        """Return the stored attribute, or `default` (None) when nothing is stored.

        With `mmap` (default: the store's), numpy arrays come back backed by a map of the
        record's file (files, SQLite's payload files, Django's `data_root_dir`; elsewhere
        read as usual): True read-only, ``"c"`` copy-on-write. See "Large arrays".

        A damaged entry raises `CorruptEntryError`; an entry written with another
        serializer raises `SerializationError`.
        """
        mode = self._parts.context.map_mode(mmap)
        operation = _ops.retrieve(self._parts.context, component, attribute_name, default, mode)
        return await self.__drive(operation)

    async def retrieve_many(
        self,
        requests: Iterable[tuple[object, str]],
        default: Any = None,
        *,
        mmap: MapArgument = None,
    ) -> list[Any]:
        """Retrieve several ``(component, attribute_name)`` at once, in order; `default`
        where nothing is stored. One round trip on SQLite and Django. `mmap`: as
        `retrieve`."""
        mode = self._parts.context.map_mode(mmap)
        operation = _ops.retrieve_many(self._parts.context, requests, default, mode)
        return await self.__drive(operation)  # type: ignore[no-any-return]

    async def contains(self, component: object, attribute_name: str) -> bool:
        """Whether the attribute of `component` is stored."""
        found: bool = await self.__drive(
            _ops.contains(self._parts.context, component, attribute_name)
        )
        return found

    async def delete(self, component: object, attribute_name: str | None = None) -> int:
        """Delete one attribute of `component`, or all of them; return how many went."""
        await self._parts.lifecycle.ready()
        if attribute_name is not None:
            check_attribute_name(attribute_name)
        return await self.backend.delete(
            await self._parts.host.key_async(component), attribute_name
        )

    async def list_contents(self) -> list[Entry]:
        """Describe every stored entry, sorted by key then attribute name."""
        await self._parts.lifecycle.ready()
        entries = await self.backend.entries()
        return sorted(entries, key=lambda entry: (entry.key, entry.attribute_name))

    # -- compute once ---------------------------------------------------------------------------

    async def get_or_compute(
        self,
        component: object,
        attribute_name: str,
        compute: Callable[[], Any],
        *,
        cross_process: bool = True,
        lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
        mmap: MapArgument = None,
    ) -> Any:
        """Return the stored attribute, or compute, store and return it.

        `compute` is a plain callable (run in a worker thread), an async callable, or one
        returning an awaitable. Callers in this process asking for the same missing entry
        at once share one computation; if it raises, they all get the exception and
        nothing is stored. With `cross_process` (the default) processes sharing the
        storage also compute it once: they wait for the holder of the entry's lock and
        then read its result (a holder that dies releases the lock; after `lock_timeout`
        seconds a waiter computes anyway).

        The computation runs in the first caller's task, shielded from cancellation: when
        that caller is cancelled the computation still completes and is stored for the
        others (the cancellation takes effect then). It never leaves a partial entry.
        `mmap`: a stored value is mapped as `retrieve` maps it; a computed one is not.
        """
        mode = self._parts.context.map_mode(mmap)
        await self._parts.lifecycle.ready()
        check_attribute_name(attribute_name)
        host = self._parts.host
        key = await host.key_async(component)
        found = get_or_compute(host, component, key, attribute_name, compute, mode=mode,
                               cross_process=cross_process, lock_timeout=lock_timeout)  # fmt: skip
        return (await found)[0]

    async def warm(
        self,
        components: Iterable[object],
        attribute_name: str,
        compute: Callable[[Any], Any],
        **options: Unpack[WarmKeywords],
    ) -> WarmReport:
        """Make sure `attribute_name` is stored for every component; return a summary.

        Components already stored are skipped, repeated ones are computed once.
        `compute(component)` may be async (`concurrency` at a time, 8 by default) or
        plain: then one at a time, unless you choose ``threads=N`` (N at once in worker
        threads: only for thread-safe code — simulators such as Brian2 keep global state
        and give wrong results in threads) or ``processes=True`` (worker processes, 8 at
        a time: `compute` and the components must be picklable, and a script must guard
        its top level with ``if __name__ == "__main__":``). With an executor, 32 (or 4
        per worker) at a time. A failure is recorded and the rest go on,
        unless `stop_on_error`, which cancels the rest and raises. `progress=True` shows
        a bar (needs ``tqdm``: ``adatastore[progress]``), or pass a callable that
        receives a `WarmProgress` after each component. An entry another process is
        computing is waited for up to `lock_timeout` seconds.

        `executor` runs the computations elsewhere: any `concurrent.futures.Executor` or
        a ``dask.distributed.Client`` (see "Running on a cluster" in the docs). Its
        workers open the store from `spec` and store what they compute, unless the
        store is in this process only (memory) or `store_in_workers` is False: then the
        values come back and this process stores them. With `check_stored` each stored
        entry is read (mapped where it can be) and a bad one computed again (see
        `StoreOptions.on_bad_entry`); False trusts existence: cheaper on object storage.
        """
        parsed = WarmOptions.of(options)
        await self._parts.lifecycle.ready()
        check_attribute_name(attribute_name)
        spec = None if parsed.executor is None or parsed.store_in_workers is False else self.spec
        with relaying():  # warnings of its tasks (stale code) issued here, at the caller
            return await _sweep.warm(
                self._parts.host, spec, components, attribute_name, compute, parsed
            )

    # -- why, and the store's health ------------------------------------------------------------

    async def explain(
        self, component: object, attribute_name: str, *, limit: int = 3
    ) -> Explanation:
        """Say where a stored entry came from, or why there is none.

        For a hit: its `Provenance` (when, where, by whom, compute time). For a miss: the
        `limit` stored components of the same type that come closest (those holding
        `attribute_name` first, then fewest differences), each with exactly what differs:
        the version, every parameter path with both values, and every input (with the
        input's own differences when the store holds that input).
        """
        await self._parts.lifecycle.ready()
        check_attribute_name(attribute_name)
        return await _explain.explain(
            self.backend, self._parts.context.identity, component, attribute_name, limit
        )

    async def provenance(self, component: object, attribute_name: str) -> Provenance | None:
        """The provenance of a stored entry (read without its payload), or None.

        `component` may also be the key of an entry, as `list_contents` gives it.
        """
        await self._parts.lifecycle.ready()
        check_attribute_name(attribute_name)
        key = (
            component if isinstance(component, str) else await self._parts.host.key_async(component)
        )
        return await _explain.provenance_of(self.backend, key, attribute_name)

    async def verify(
        self, *, repair: bool = False, progress: Callable[[int, int], None] | None = None
    ) -> VerifyReport:
        """Check every entry's checksum (and signature, with a signing key).

        Nothing is deserialized. With `repair`, damaged entries are deleted (they are
        caches: the next computation stores them again) — only those proved damaged and
        still as they were read: an entry the storage could not be read from (a
        `StorageError`) is reported in ``unreadable`` and kept, and a store opened
        without (or with the wrong) data_root_dir or payload bucket raises
        `ConfigurationError` before anything is removed. `progress(done, total)` is
        called after each entry.
        """
        report: VerifyReport = await self.__drive(
            _verify.verify(self._parts.context.codec, repair, progress)
        )
        return report

    async def cleanup(self, *, older_than: float = 3600.0) -> int:
        """Remove what interrupted writes left behind (temp files, unreferenced payloads).

        Only leftovers older than `older_than` seconds go, so writes in progress in other
        processes are safe. Returns how many were removed.
        """
        await self._parts.lifecycle.ready()
        return await self.backend.cleanup(older_than)

    def __repr__(self) -> str:
        state = " closed" if self._parts.lifecycle.closed else ""
        return f"<{type(self).__name__} over {self.backend!r}{state}>"
