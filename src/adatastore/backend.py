"""The contract a storage implements: records as bytes, by (key, attribute name).

A `Backend` moves sealed records; it knows nothing of components, serializers or
signatures (the store does all that once, for every back-end). The store holds its
back-end (``store.backend``), as Django's cache holds its client: a back-end never
inherits the user's API, so it cannot override ``store`` by accident, and users
autocompleting ``store.`` see the user API only.

Required: `write`, `read`, `contains`, `delete`, `entries`. Optional, with defaults:
`open`/`close`, the bulk methods (one call per item by default; back-ends answer in one
round trip where they can), `read_head` (for tools that need only a header), `components`
(for `explain` and the command), `lock` (cross-process locks for `get_or_compute`),
`cleanup`, `planted`/`remove_planted` (for `verify`), `delete_listed` (compare-and-delete,
for eviction and repair), `forget` (after a fork),
`read_mapped`/`read_many_mapped` (``retrieve(mmap=True)``: a map of the record's file
where there is one; by default a plain read).

Back-ends whose I/O blocks anyway (files; SQLite, whose connections live in threads of
their own) set `supports_blocking` and implement the ``blocking_*`` methods: the blocking
API then runs store, retrieve and contains in the caller's thread, with no event loop.
A back-end built on an asyncio-only library sets `requires_asyncio`.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import anyio.to_thread

from ._storage.fsio import MapMode
from .records import ComponentRecord, DamagedEntry, Entry, same_record
from .serializers import Buffer

__all__ = [
    "Backend",
    "BackendSpec",
    "MapMode",
    "RecordWrite",
    "ThreadedBackend",
    "Used",
    "no_lock",
    "unchanged",
]

T = TypeVar("T")

RecordWrite = tuple[str, str, Sequence[Buffer], ComponentRecord]
"""(key, attribute name, sealed record buffers, component record) of one write."""

Used = tuple[str, str, float]
"""(key, attribute name, when it was last read in seconds since the epoch)."""


@contextlib.asynccontextmanager
async def no_lock() -> AsyncIterator[bool]:
    """The lock of storage that only this process sees: none (always taken)."""
    yield True


@dataclass(frozen=True, eq=False)
class BackendSpec:
    """How another process opens the same storage: ``factory(**arguments)``.

    Picklable (the factory is a class or a module-level function), so `warm` can send it
    to the workers of an executor, which open the store there. `arguments` may hold a
    database password: it is never shown (`url` masks it, and so does ``repr``).
    """

    factory: Callable[..., Backend]
    arguments: Mapping[str, Any]
    url: str
    """Where the storage is, as a store URL with any password masked: for messages."""

    def make(self) -> Backend:
        """A new, unopened back-end on the same storage."""
        return self.factory(**self.arguments)

    def __repr__(self) -> str:
        return f"BackendSpec({self.url!r})"


def unchanged(entries: Sequence[Entry], listing: Sequence[Entry]) -> list[Entry]:
    """Those of `entries` that `listing` (a newer look at the store) shows unchanged."""
    current = {(entry.key, entry.attribute_name): entry for entry in listing}
    return [
        entry
        for entry in entries
        if (now := current.get((entry.key, entry.attribute_name))) is not None
        and same_record(entry, now)
    ]


class Backend(abc.ABC):
    """Where records live (see the module docstring)."""

    requires_asyncio: ClassVar[bool] = False
    supports_blocking: ClassVar[bool] = False
    warn_unclosed: bool = True
    """Whether a back-end garbage-collected unclosed says so (`ResourceWarning`); the
    blocking classes, whose legacy API has no ``close``, turn it off."""

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Prepare the storage (create files, connect). Called once, before any other."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Called once."""

    def forget(self) -> None:  # noqa: B027 - optional hook
        """Drop, without closing or touching, what belongs to the parent process.

        Called on the first use in a forked child; `open` is called again afterwards.
        Connections, threads, event-loop objects and locks of the parent must be
        forgotten here (`adatastore._runtime.forks.remember` keeps them from being finalized).
        """

    # -- records ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def write(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        """Store `record` (the concatenation of the buffers) atomically under (key, name).

        Also keep `component` for `key` if none is kept yet. A reader must see the old
        record or the new one, never a mix.
        """

    @abc.abstractmethod
    async def read(self, key: str, attribute_name: str) -> Buffer | None:
        """The stored record, or None when there is none."""

    @abc.abstractmethod
    async def contains(self, key: str, attribute_name: str) -> bool:
        """Whether a record is stored under (key, name)."""

    @abc.abstractmethod
    async def delete(self, key: str, attribute_name: str | None) -> int:
        """Delete one record, or every record of `key` when name is None; return how many."""

    @abc.abstractmethod
    async def entries(self) -> list[Entry]:
        """Describe every stored record."""

    async def write_many(self, records: Sequence[RecordWrite]) -> None:
        """Store several records, all or nothing where the storage allows (one transaction
        on the SQL back-ends); by default one `write` each."""
        for key, name, record, component in records:
            await self.write(key, name, record, component)

    async def read_many(self, pairs: Sequence[tuple[str, str]]) -> list[Buffer | None]:
        """The records of several (key, name) pairs, None where missing."""
        return [await self.read(key, name) for key, name in pairs]

    # -- limits (optional: see `adatastore._core.limits`) ------------------------------------------

    async def touch_many(self, used: Sequence[Used]) -> None:  # noqa: B027 - optional hook
        """Record when entries were last read: ``(key, name, seconds since the epoch)``,
        batched by the store (a few writes per thousand distinct entries read). A
        back-end that keeps nothing makes eviction least recently *stored* first."""

    def blocking_touch_many(self, used: Sequence[Used]) -> None:  # noqa: B027
        """`touch_many` in the calling thread (back-ends that support blocking calls)."""

    async def last_used(self) -> dict[tuple[str, str], float]:
        """When each entry was last read, as `touch_many` recorded ({} when not kept)."""
        return {}

    async def delete_listed(self, entries: Sequence[Entry]) -> list[Entry]:
        """Delete each of `entries` (as `entries()` listed them) only while it is still
        that very record (`records.same_record`): one stored again in its place since —
        by another process that recomputed it, say — is kept. Return those deleted.

        Eviction, ``prune`` and ``verify --repair`` delete through this, so they never
        remove a value written after they looked. The built-in back-ends check and
        delete in one atomic step (a transaction, S3's ``If-Match``, a rename aside);
        this default lists the store again and deletes what is unchanged, which narrows
        the race but cannot close it: a back-end shared between processes overrides it.
        """
        listing = await self.entries()
        return [
            e for e in unchanged(entries, listing) if await self.delete(e.key, e.attribute_name)
        ]

    async def contains_many(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the (key, name) pairs are stored."""
        return {pair for pair in pairs if await self.contains(*pair)}

    async def read_mapped(self, key: str, attribute_name: str, mode: MapMode) -> Buffer | None:
        """The record as a map of its file (``"r"`` read-only, ``"c"`` copy-on-write) where
        the back-end keeps it in a file of its own, else as `read` returns it (the default).
        A map must stay valid when the record is replaced or deleted: its file is never
        rewritten or truncated in place."""
        return await self.read(key, attribute_name)

    async def read_many_mapped(
        self, pairs: Sequence[tuple[str, str]], mode: MapMode
    ) -> list[Buffer | None]:
        """`read_many`, with records mapped as `read_mapped` maps them."""
        return await self.read_many(pairs)

    async def read_head(self, key: str, attribute_name: str, size: int) -> Buffer | None:
        """At least the first `size` bytes of the record (all of it when shorter), or None;
        for tools that need only its header. By default the whole record."""
        return await self.read(key, attribute_name)

    async def components(self, full_type: str | None) -> list[ComponentRecord]:
        """The component records kept, of one type (or all); for `explain` and tools."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its components")

    def lock(
        self, key: str, attribute_name: str, timeout: float | None
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        """A lock on one entry shared by every process using this storage; it yields
        whether it was taken (False after `timeout` seconds: the caller goes ahead).
        The default, for in-process storage, locks nothing."""
        return no_lock()

    async def cleanup(self, older_than: float) -> int:
        """Remove leftovers of interrupted writes older than `older_than` seconds."""
        return 0

    def spec(self) -> BackendSpec | None:
        """How another process opens this same storage (called once open), or None: only
        this process reaches it (the default). Workers of ``warm(executor=...)`` open the
        store from it and store what they compute; without one the results travel back
        and the calling process stores them."""
        return None

    async def planted(self) -> list[DamagedEntry]:
        """Damage that listing cannot show (links or special files planted where the
        storage's own directories or files belong); for `verify`."""
        return []

    async def remove_planted(self, item: DamagedEntry) -> int:
        """Remove one item of `planted` (a link itself, never its target)."""
        return 0

    # -- the blocking path (with `supports_blocking`) -----------------------------------------
    #
    # The blocking API calls these in the caller's thread for store, store_many, retrieve,
    # retrieve_many and contains; everything else goes through the async methods.

    def blocking_open(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no blocking path")

    def blocking_close(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no blocking path")

    def blocking_write(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no blocking path")

    def blocking_write_many(self, records: Sequence[RecordWrite]) -> None:
        for key, name, record, component in records:
            self.blocking_write(key, name, record, component)

    def blocking_read(self, key: str, attribute_name: str) -> Buffer | None:
        raise NotImplementedError(f"{type(self).__name__} has no blocking path")

    def blocking_read_many(self, pairs: Sequence[tuple[str, str]]) -> list[Buffer | None]:
        return [self.blocking_read(key, name) for key, name in pairs]

    def blocking_contains(self, key: str, attribute_name: str) -> bool:
        raise NotImplementedError(f"{type(self).__name__} has no blocking path")

    def blocking_contains_many(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        return {pair for pair in pairs if self.blocking_contains(*pair)}

    def blocking_read_mapped(self, key: str, attribute_name: str, mode: MapMode) -> Buffer | None:
        return self.blocking_read(key, attribute_name)

    def blocking_read_many_mapped(
        self, pairs: Sequence[tuple[str, str]], mode: MapMode
    ) -> list[Buffer | None]:
        return self.blocking_read_many(pairs)


class ThreadedBackend(Backend):
    """A back-end whose I/O is blocking calls (files): it implements the ``blocking_*``
    methods, and each async method is those in one worker-thread hop (`anyio.to_thread`,
    which runs on asyncio and trio alike and costs ~50 µs)."""

    supports_blocking: ClassVar[bool] = True

    @staticmethod
    async def in_thread(function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` in a worker thread."""
        return await anyio.to_thread.run_sync(function, *args)

    async def open(self) -> None:
        await self.in_thread(self.blocking_open)

    async def close(self) -> None:
        await self.in_thread(self.blocking_close)

    async def write(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        await self.in_thread(self.blocking_write, key, attribute_name, record, component)

    async def write_many(self, records: Sequence[RecordWrite]) -> None:
        await self.in_thread(self.blocking_write_many, records)

    async def read(self, key: str, attribute_name: str) -> Buffer | None:
        return await self.in_thread(self.blocking_read, key, attribute_name)

    async def read_many(self, pairs: Sequence[tuple[str, str]]) -> list[Buffer | None]:
        return await self.in_thread(self.blocking_read_many, pairs)

    async def read_mapped(self, key: str, attribute_name: str, mode: MapMode) -> Buffer | None:
        return await self.in_thread(self.blocking_read_mapped, key, attribute_name, mode)

    async def read_many_mapped(
        self, pairs: Sequence[tuple[str, str]], mode: MapMode
    ) -> list[Buffer | None]:
        return await self.in_thread(self.blocking_read_many_mapped, pairs, mode)

    async def read_head(self, key: str, attribute_name: str, size: int) -> Buffer | None:
        return await self.in_thread(self.blocking_read_head, key, attribute_name, size)

    async def contains(self, key: str, attribute_name: str) -> bool:
        return await self.in_thread(self.blocking_contains, key, attribute_name)

    async def contains_many(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        return await self.in_thread(self.blocking_contains_many, pairs)

    async def delete(self, key: str, attribute_name: str | None) -> int:
        return await self.in_thread(self.blocking_delete, key, attribute_name)

    async def entries(self) -> list[Entry]:
        return await self.in_thread(self.blocking_entries)

    async def touch_many(self, used: Sequence[Used]) -> None:
        await self.in_thread(self.blocking_touch_many, used)

    async def last_used(self) -> dict[tuple[str, str], float]:
        return await self.in_thread(self.blocking_last_used)

    async def delete_listed(self, entries: Sequence[Entry]) -> list[Entry]:
        return await self.in_thread(self.blocking_delete_listed, entries)

    async def components(self, full_type: str | None) -> list[ComponentRecord]:
        return await self.in_thread(self.blocking_components, full_type)

    async def cleanup(self, older_than: float) -> int:
        return await self.in_thread(self.blocking_cleanup, older_than)

    async def planted(self) -> list[DamagedEntry]:
        return await self.in_thread(self.blocking_planted)

    async def remove_planted(self, item: DamagedEntry) -> int:
        return await self.in_thread(self.blocking_remove_planted, item)

    def blocking_open(self) -> None:
        """Prepare the storage."""

    def blocking_close(self) -> None:
        """Release resources."""

    def blocking_read_head(self, key: str, attribute_name: str, size: int) -> Buffer | None:
        return self.blocking_read(key, attribute_name)

    @abc.abstractmethod
    def blocking_write(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None: ...

    @abc.abstractmethod
    def blocking_read(self, key: str, attribute_name: str) -> Buffer | None: ...

    @abc.abstractmethod
    def blocking_contains(self, key: str, attribute_name: str) -> bool: ...

    @abc.abstractmethod
    def blocking_delete(self, key: str, attribute_name: str | None) -> int: ...

    @abc.abstractmethod
    def blocking_entries(self) -> list[Entry]: ...

    def blocking_last_used(self) -> dict[tuple[str, str], float]:
        return {}

    def blocking_delete_listed(self, entries: Sequence[Entry]) -> list[Entry]:
        """`delete_listed` (the same default: list again, delete what is unchanged)."""
        listing = self.blocking_entries()
        return [
            e for e in unchanged(entries, listing) if self.blocking_delete(e.key, e.attribute_name)
        ]

    def blocking_components(self, full_type: str | None) -> list[ComponentRecord]:
        raise NotImplementedError(f"{type(self).__name__} cannot list its components")

    def blocking_cleanup(self, older_than: float) -> int:
        return 0

    def blocking_planted(self) -> list[DamagedEntry]:
        return []

    def blocking_remove_planted(self, item: DamagedEntry) -> int:
        return 0
