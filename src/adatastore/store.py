"""`AsyncDataStore`: the interface every back-end implements, and the behaviour they share.

The public methods (`store`, `retrieve`, `contains`, `delete`, `list_contents`) do the
shared work once: check the component and the attribute name, make the key, serialize,
wrap the parts in a checksummed record. A back-end only moves records: it implements six
small ``*_raw`` methods on bytes (see the "writing a back-end" section of the docs).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Self

import anyio.lowlevel
import anyio.to_process
import anyio.to_thread

from . import _forks, _record
from ._compute import (
    AwaitableResult,
    Flight,
    WarmProgress,
    WarmReport,
    call_boxed,
    is_async,
    no_lock,
    progress_reporter,
)
from ._waiting import run_to_end
from ._warm import WarmRun
from .component import Component, check_component, full_type, inputs_of
from .errors import (
    ConfigurationError,
    CorruptEntryError,
    DataStoreError,
    IntegrityError,
    InvalidKeyError,
    InvalidNameError,
    SerializationError,
    StoreClosedError,
)
from .keygenerators import KeyGenerator, canonical_hash, describe_parameters, graph_keys
from .provenance import (
    Candidate,
    Difference,
    Explanation,
    Provenance,
    diff_components,
    provenance_now,
)
from .serializers import Buffer, PickleSerializer, Serializer
from .signing import SigningKey, signer_from
from .stats import Stats, logger

__all__ = [
    "MAX_ATTRIBUTE_NAME_LENGTH",
    "AsyncDataStore",
    "ComponentRecord",
    "DamagedEntry",
    "Entry",
    "VerifyReport",
    "WarmProgress",
    "WarmReport",
]

MAX_ATTRIBUTE_NAME_LENGTH = 255
"""Attribute names longer than this many characters are refused."""

# Records at least this large are sealed and checked in a worker thread, off the loop.
_OFFLOAD_BYTES = 1 << 20
_HEAD_BYTES = 16 << 10  # enough for any record header (provenance included)


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored attribute of one component, as `list_contents` reports it."""

    key: str
    attribute_name: str
    full_type: str
    version: str
    size: int
    """Bytes the entry takes in storage (its record, envelope included)."""
    stored_at: datetime
    """When the entry was last written (timezone-aware, UTC)."""


@dataclass(frozen=True, slots=True)
class ComponentRecord:
    """What a store records about a component besides its data: who it is and what it used."""

    key: str
    full_type: str
    version: str
    parameters: Any
    """The parameters, rendered JSON-compatible by `keygenerators.describe_parameters`."""
    input_keys: tuple[str, ...]

    def to_json(self) -> bytes:
        """Serialize to UTF-8 JSON."""
        return json_text(
            {
                "key": self.key,
                "full_type": self.full_type,
                "version": self.version,
                "parameters": self.parameters,
                "input_keys": list(self.input_keys),
            },
            sort_keys=True,
        ).encode("utf-8")

    @classmethod
    def from_json(cls, data: Buffer) -> ComponentRecord:
        """Parse what `to_json` wrote; raise `ValueError` when it is not that."""
        try:
            fields = json.loads(bytes(data).decode("utf-8", "surrogatepass"))
            return cls(
                key=str(fields["key"]),
                full_type=str(fields["full_type"]),
                version=str(fields["version"]),
                parameters=fields["parameters"],
                input_keys=tuple(str(k) for k in fields["input_keys"]),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a component record: {error!r}") from None


_MISSING: Any = object()


def json_text(value: Any, *, sort_keys: bool = False) -> str:
    """JSON text that any database can store: readable UTF-8, or, when the value holds a
    lone surrogate (a non-UTF-8 file name from ``os.listdir``), ``\\udXXX`` escapes,
    which read back to the very same string."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=sort_keys)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, sort_keys=sort_keys)
    return text


def storable_text(text: str) -> str:
    """`text` for a text column: a lone surrogate written as ``\\udXXX`` (metadata only:
    keys are made from the value itself)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _provenance(header: _record.Header) -> Provenance | None:
    """A record's provenance; None when it has none or it is unreadable (damage there
    does not hide the entry: `verify` checks the header's checksum and signature)."""
    found = header.provenance
    if found is None:
        return None
    try:
        return Provenance.from_json(found)
    except ValueError:
        return None


def _input_index(path: str) -> int | None:
    """N for a difference at ``input[N]``, else None."""
    if path.startswith("input[") and path.endswith("]"):
        return int(path[6:-1])
    return None


@dataclass(frozen=True, slots=True)
class DamagedEntry:
    """An entry `verify` found damaged, and why."""

    key: str
    attribute_name: str
    """The attribute, or ``"*"`` for damage to the whole entry (its directory, metadata)."""
    reason: str
    path: str | None = None
    """Where in the storage, for damage that is not a record (a planted link, say)."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What `verify` checked and found."""

    checked: int
    damaged: tuple[DamagedEntry, ...]
    removed: int
    """Damaged entries deleted (with ``repair=True``)."""

    @property
    def ok(self) -> bool:
        """Whether no damage was found."""
        return not self.damaged


def check_attribute_name(name: object) -> str:
    """Return `name` if it is a usable attribute name, else raise `InvalidNameError`."""
    if not isinstance(name, str):
        raise InvalidNameError(f"attribute name must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidNameError("attribute name must not be empty")
    if len(name) > MAX_ATTRIBUTE_NAME_LENGTH:
        raise InvalidNameError(
            f"attribute name is {len(name)} characters long; "
            f"the limit is {MAX_ATTRIBUTE_NAME_LENGTH}"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidNameError(
            f"attribute name {name!r} contains a control character (NUL, newline, ...)"
        )
    if "/" in name or "\\" in name or ".." in name or name == ".":
        raise InvalidNameError(
            f"attribute name {name!r} looks like a path ('/', '\\', '..' or '.'); "
            "attribute names are plain names such as 'spikes' or 'rates.excitatory'"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidNameError(
            f"attribute name {name!r} is not valid Unicode (it holds a lone surrogate)"
        ) from None
    return name


def _check_key(key: object, generator: object) -> str:
    name = getattr(generator, "__qualname__", repr(generator))
    if not isinstance(key, str):
        raise InvalidKeyError(
            f"key generator {name} returned a {type(key).__name__}; keys must be strings"
        )
    if not key or "\0" in key:
        raise InvalidKeyError(f"key generator {name} returned an empty key or one with NUL")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKeyError(
            f"key generator {name} returned a key that is not valid Unicode"
        ) from None
    return key


class AsyncDataStore(abc.ABC):
    """Abstract base of every store: awaitable `store`/`retrieve` keyed by component identity.

    Subclasses implement the ``*_raw`` methods. A back-end built on an asyncio-only
    library sets ``requires_asyncio = True``; using it under trio then raises
    `ConfigurationError` instead of failing deep inside that library.
    """

    requires_asyncio: ClassVar[bool] = False
    warn_unclosed: bool = True
    """Whether a store garbage-collected unclosed says so (`ResourceWarning`); the
    blocking classes, whose legacy API has no ``close``, turn it off."""

    def __init__(
        self,
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        *,
        signing_key: SigningKey | None = None,
        verify_on_read: bool = True,
    ) -> None:
        """`signing_key` (or ``ADATASTORE_SIGNING_KEY``) signs every record and refuses
        unsigned or tampered ones before decoding them (see `adatastore.signing`).
        `verify_on_read=False` skips the payload checksum on reads (signatures are always
        checked); `verify` still checks everything.
        """
        if key_generator is not None and not callable(key_generator):
            raise ConfigurationError(
                f"key_generator must be callable, not a {type(key_generator).__name__}"
            )
        if serializer is not None and not isinstance(serializer, Serializer):
            raise ConfigurationError(
                f"serializer must have 'name', 'dumps' and 'loads'; got {serializer!r}"
            )
        self.key_generator: KeyGenerator = key_generator or canonical_hash
        self.serializer: Serializer = serializer or PickleSerializer()
        self.signer = signer_from(signing_key)
        self.verify_on_read = verify_on_read
        self.stats = Stats()
        self._flights: dict[tuple[str, str], Flight] = {}
        self._opened = False
        self._closed = False
        self._generation = _forks.generation()

    # -- the back-end's part --------------------------------------------------------------------

    async def open_raw(self) -> None:  # noqa: B027 - optional hook
        """Prepare the storage (create files, connect). Must be idempotent."""

    @abc.abstractmethod
    async def write_raw(
        self,
        key: str,
        attribute_name: str,
        record: Sequence[Buffer],
        component: ComponentRecord,
    ) -> None:
        """Store `record` (the concatenation of the buffers) atomically under (key, name).

        Also keep `component` for `key` if none is kept yet. A reader must see the old
        record or the new one, never a mix.
        """

    @abc.abstractmethod
    async def read_raw(self, key: str, attribute_name: str) -> Buffer | None:
        """Return the stored record, or None when there is none."""

    @abc.abstractmethod
    async def contains_raw(self, key: str, attribute_name: str) -> bool:
        """Whether a record is stored under (key, name)."""

    @abc.abstractmethod
    async def delete_raw(self, key: str, attribute_name: str | None) -> int:
        """Delete one record, or every record of `key` when name is None; return how many."""

    @abc.abstractmethod
    async def list_raw(self) -> list[Entry]:
        """Describe every stored record."""

    async def close_raw(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Called once."""

    async def write_many_raw(
        self, records: Sequence[tuple[str, str, Sequence[Buffer], ComponentRecord]]
    ) -> None:
        """Store several records (key, name, record, component). Back-ends may do it in
        one transaction or one round trip; by default it calls `write_raw` for each."""
        for key, name, record, component in records:
            await self.write_raw(key, name, record, component)

    async def read_many_raw(self, pairs: Sequence[tuple[str, str]]) -> list[Buffer | None]:
        """The records of several (key, name) pairs, None where missing; by default it
        calls `read_raw` for each."""
        return [await self.read_raw(key, name) for key, name in pairs]

    async def contains_many_raw(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the (key, name) pairs are stored. Back-ends may answer in one round trip;
        by default it asks `contains_raw` for each."""
        return {pair for pair in pairs if await self.contains_raw(*pair)}

    async def read_head_raw(self, key: str, attribute_name: str, size: int) -> Buffer | None:
        """At least the first `size` bytes of the record (all of it when shorter), or None.

        For tools that need only the header (provenance); by default the whole record.
        """
        return await self.read_raw(key, attribute_name)

    async def components_raw(self, full_type: str | None) -> list[ComponentRecord]:
        """The component records kept, of one type (or all); for `explain` and tools."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its components")

    async def cleanup_raw(self, older_than: float) -> int:
        """Remove leftovers of interrupted writes older than `older_than` seconds.

        Optional; returns how many were removed.
        """
        return 0

    async def planted_raw(self) -> list[DamagedEntry]:
        """Damage that listing cannot show (links or special files planted where the
        storage's own directories or files belong); for `verify`. Optional."""
        return []

    async def remove_planted_raw(self, item: DamagedEntry) -> int:
        """Remove one item of `planted_raw` (a link itself, never its target)."""
        return 0

    def forget_raw(self) -> None:  # noqa: B027 - optional hook
        """Drop, without closing or touching, what belongs to the parent process.

        Called on the first use in a forked child; the store opens again afterwards.
        Connections, threads, event-loop objects and locks of the parent must be
        forgotten here (`adatastore._forks.remember` keeps them from being finalized).
        """

    # -- lifecycle ------------------------------------------------------------------------------

    def _check_process(self) -> None:
        """In a forked child, drop the parent's resources (first use only)."""
        if self._generation != _forks.generation():
            with _forks.child_lock():
                if self._generation != _forks.generation():
                    self._flights = {}  # the parent's computations are not ours to wait for
                    self.forget_raw()
                    self._opened = False
                    self._generation = _forks.generation()

    def _check_usable(self) -> None:
        self._check_process()
        if self._closed:
            raise StoreClosedError(f"{self!r} is closed")
        if self.requires_asyncio:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                raise ConfigurationError(
                    f"{type(self).__name__} runs on asyncio only (its I/O library needs an "
                    "asyncio event loop), but it was awaited under another event loop "
                    "(trio?); run it under asyncio, or use the blocking class, which "
                    "runs on its own asyncio thread"
                ) from None

    async def open(self) -> Self:
        """Prepare the store now instead of at first use; returns the store."""
        self._check_usable()
        if not self._opened:
            await self.open_raw()
            self._opened = True
        return self

    async def _ready(self) -> None:
        self._check_usable()
        if not self._opened:
            await self.open()

    async def aclose(self) -> None:
        """Close the store; later calls raise `StoreClosedError`. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        await self.close_raw()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- identity -------------------------------------------------------------------------------

    def key_of(self, component: object) -> str:
        """Return the key this store files `component` under."""
        check_component(component)
        return _check_key(self.key_generator(component), self.key_generator)

    def _component_record(self, component: Component, key: str) -> ComponentRecord:
        return ComponentRecord(
            key=key,
            full_type=full_type(component),
            version=storable_text(str(component.version)),
            parameters=describe_parameters(component.parameters),
            input_keys=tuple(self.key_of(item) for item in inputs_of(component)),
        )

    # -- the public API -------------------------------------------------------------------------

    async def store(self, component: object, attribute_name: str, data: Any) -> None:
        """Store `data` as the attribute `attribute_name` of `component`, replacing any."""
        await self._ready()
        check_attribute_name(attribute_name)
        await self._put(component, self.key_of(component), attribute_name, data)

    async def _put(
        self,
        component: object,
        key: str,
        attribute_name: str,
        data: Any,
        compute_seconds: float | None = None,
    ) -> None:
        start = time.perf_counter()
        record, sealed = await self._seal_value(
            component, key, attribute_name, data, compute_seconds
        )
        await self.write_raw(key, attribute_name, sealed, record)
        self._count_store(key, attribute_name, sealed, time.perf_counter() - start)

    def _sealing(
        self,
        component: object,
        key: str,
        attribute_name: str,
        data: Any,
        compute_seconds: float | None = None,
    ) -> tuple[ComponentRecord, list[Buffer], Callable[[], list[Buffer]]]:
        """The component record, the serialized parts, and the call that seals them
        (checksum, signature, provenance): the caller decides where that call runs."""
        record = self._component_record(component, key)  # type: ignore[arg-type]
        parts = self.serializer.dumps(data)
        seal = functools.partial(
            _record.seal,
            self.serializer.name,
            attribute_name,
            parts,
            key=key,
            signer=self.signer,
            provenance=provenance_now(compute_seconds).to_json(),
        )
        return record, parts, seal

    async def _seal_value(
        self,
        component: object,
        key: str,
        attribute_name: str,
        data: Any,
        compute_seconds: float | None = None,
    ) -> tuple[ComponentRecord, list[Buffer]]:
        """The component record and the sealed record of a value; large ones are sealed
        in a worker thread."""
        record, parts, seal = self._sealing(component, key, attribute_name, data, compute_seconds)
        if sum(memoryview(part).nbytes for part in parts) >= _OFFLOAD_BYTES:
            return record, await anyio.to_thread.run_sync(seal)
        return record, seal()

    def _count_store(
        self, key: str, attribute_name: str, sealed: Sequence[Buffer], seconds: float
    ) -> None:
        size = _record.sealed_size(sealed)
        self.stats.stores += 1
        self.stats.bytes_written += size
        self.stats.write_seconds += seconds
        logger.debug("stored %s of %s (%d bytes)", attribute_name, key, size)

    async def store_many(self, items: Iterable[tuple[object, str, Any]]) -> None:
        """Store several ``(component, attribute_name, data)`` at once.

        Everything is checked and serialized first: one bad item raises and nothing is
        stored. Back-ends write them in one go (one transaction on SQLite and Django).
        """
        await self._ready()
        start = time.perf_counter()
        prepared = []
        for component, attribute_name, data in items:
            check_attribute_name(attribute_name)
            key = self.key_of(component)
            record, sealed = await self._seal_value(component, key, attribute_name, data)
            prepared.append((key, attribute_name, sealed, record))
        await self.write_many_raw(prepared)
        share = (time.perf_counter() - start) / max(len(prepared), 1)
        for key, attribute_name, sealed, _ in prepared:
            self._count_store(key, attribute_name, sealed, share)

    async def retrieve_many(
        self, requests: Iterable[tuple[object, str]], default: Any = None
    ) -> list[Any]:
        """Retrieve several ``(component, attribute_name)`` at once, in order; `default`
        where nothing is stored. One round trip on SQLite and Django."""
        await self._ready()
        pairs = self._request_pairs(requests)
        start = time.perf_counter()
        records = await self.read_many_raw(pairs)
        values = []
        for (key, attribute_name), data in zip(pairs, records, strict=True):
            if data is None:
                self.stats.misses += 1
                values.append(default)
                continue
            values.append(await self._decode(key, attribute_name, data))
            self.stats.hits += 1
            self.stats.bytes_read += memoryview(data).nbytes
        self.stats.read_seconds += time.perf_counter() - start
        return values

    def _request_pairs(self, requests: Iterable[tuple[object, str]]) -> list[tuple[str, str]]:
        """(key, attribute name) of each (component, attribute name), all checked first."""
        pairs = []
        for component, attribute_name in requests:
            check_attribute_name(attribute_name)
            pairs.append((self.key_of(component), attribute_name))
        return pairs

    async def retrieve(self, component: object, attribute_name: str, default: Any = None) -> Any:
        """Return the stored attribute, or `default` (None) when nothing is stored.

        A damaged entry raises `CorruptEntryError`; an entry written with another
        serializer raises `SerializationError`.
        """
        await self._ready()
        check_attribute_name(attribute_name)
        key = self.key_of(component)
        value = await self._fetch(key, attribute_name)
        if value is _MISSING:
            self.stats.misses += 1
            logger.debug("miss: %s of %s", attribute_name, key)
            return default
        self.stats.hits += 1
        logger.debug("hit: %s of %s", attribute_name, key)
        return value

    async def _fetch(self, key: str, attribute_name: str) -> Any:
        """The stored value, or `_MISSING`; counts bytes and time, not hits or misses."""
        start = time.perf_counter()
        data = await self.read_raw(key, attribute_name)
        if data is None:
            return _MISSING
        value = await self._decode(key, attribute_name, data)
        self.stats.bytes_read += memoryview(data).nbytes
        self.stats.read_seconds += time.perf_counter() - start
        return value

    # -- why ------------------------------------------------------------------------------------

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
        await self._ready()
        check_attribute_name(attribute_name)
        keys = graph_keys(self.key_generator, check_component(component))
        key = _check_key(keys[id(component)], self.key_generator)
        kind = full_type(component)
        header = await self._header_of(key, attribute_name)
        if header is not None:
            return Explanation(key, attribute_name, kind, hit=True, provenance=_provenance(header))
        attributes: dict[str, list[str]] = {}
        # The type moved to another module (or a script's class seen from a worker):
        # stored types with the same qualified name are candidates too.
        qualified = "." + type(component).__qualname__
        kinds = {kind}
        for entry in await self.list_raw():
            attributes.setdefault(entry.key, []).append(entry.attribute_name)
            if entry.full_type.endswith(qualified):
                kinds.add(entry.full_type)
        by_type: dict[str, dict[str, ComponentRecord]] = {}  # each type read once
        wanted: dict[int, ComponentRecord] = {}  # each asked-for component described once
        candidates = []
        for stored_kind in sorted(kinds):
            for record in (await self._records_of(stored_kind, by_type)).values():
                if record.key == key or record.key not in attributes:
                    continue
                differences = await self._differences(component, record, by_type, keys, wanted)
                if stored_kind != kind:
                    differences.insert(0, Difference("type", kind, stored_kind))
                candidates.append(
                    Candidate(record.key, tuple(sorted(attributes[record.key])), tuple(differences))
                )
        candidates.sort(
            key=lambda c: (attribute_name not in c.attribute_names, len(c.differences), c.key)
        )
        return Explanation(
            key,
            attribute_name,
            kind,
            hit=False,
            candidates=tuple(candidates[:limit]),
            same_component_attributes=tuple(sorted(attributes.get(key, ()))),
        )

    async def _provenance_of(self, key: str, attribute_name: str) -> Provenance | None:
        """The provenance in a record's header (read without its payload), or None."""
        header = await self._header_of(key, attribute_name)
        return None if header is None else _provenance(header)

    async def _header_of(self, key: str, attribute_name: str) -> _record.Header | None:
        """A record's header, read without its payload; None when nothing is stored."""
        data = await self.read_head_raw(key, attribute_name, _HEAD_BYTES)
        if data is None:
            return None
        try:
            header, _ = _record.read_header(data)
        except _record.DamagedRecord:
            data = await self.read_raw(key, attribute_name)  # a header longer than the head?
            if data is None:
                return None
            try:
                header, _ = _record.read_header(data)
            except _record.DamagedRecord as error:
                raise CorruptEntryError(key, attribute_name, str(error)) from None
        return header

    async def _records_of(
        self, kind: str, by_type: dict[str, dict[str, ComponentRecord]]
    ) -> dict[str, ComponentRecord]:
        """The stored component records of one type by key, read once per `explain`."""
        if kind not in by_type:
            by_type[kind] = {record.key: record for record in await self.components_raw(kind)}
        return by_type[kind]

    async def _differences(
        self,
        component: object,
        stored: ComponentRecord,
        by_type: dict[str, dict[str, ComponentRecord]],
        keys: dict[int, str],
        described: dict[int, ComponentRecord],
        depth: int = 0,
    ) -> list[Difference]:
        """How `component` differs from a stored one; keys and descriptions come from
        memos made once per `explain` (a chain of 2,000 time steps stays linear)."""
        wanted = described.get(id(component))
        if wanted is None:
            node: Any = component
            wanted = described[id(component)] = ComponentRecord(
                key=keys[id(component)],
                full_type=full_type(component),
                version=storable_text(str(node.version)),
                parameters=describe_parameters(node.parameters),
                input_keys=tuple(keys[id(item)] for item in inputs_of(node)),
            )
        differences = diff_components(
            wanted.version,
            wanted.parameters,
            wanted.input_keys,
            stored.version,
            stored.parameters,
            stored.input_keys,
        )
        inputs = inputs_of(component)  # type: ignore[arg-type]
        nested: list[Difference] = []
        for difference in differences:
            nested.append(difference)
            index = _input_index(difference.path)
            if index is None or index >= len(inputs) or index >= len(stored.input_keys):
                continue
            if depth >= 8:  # deep chains: the input keys say enough
                continue
            records = await self._records_of(full_type(inputs[index]), by_type)
            stored_input = records.get(stored.input_keys[index])
            if stored_input is None:
                continue
            inner = await self._differences(
                inputs[index], stored_input, by_type, keys, described, depth + 1
            )
            nested += [
                Difference(f"{difference.path}.{item.path}", item.wanted, item.stored)
                for item in inner
            ]
        return nested

    # -- compute once ---------------------------------------------------------------------------

    def lock_raw(
        self, key: str, attribute_name: str, timeout: float | None
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        """A lock on one entry shared by every process using this storage.

        Back-ends override it (files and SQLite lock a file, Django a database advisory
        lock); the default, for in-process storage, locks nothing. It yields whether the
        lock was taken (False after `timeout` seconds: the caller goes ahead unlocked).
        """
        return no_lock()

    async def get_or_compute(
        self,
        component: object,
        attribute_name: str,
        compute: Callable[[], Any],
        *,
        cross_process: bool = True,
        lock_timeout: float | None = 3600.0,
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
        """
        value, _ = await self._get_or_compute(
            component, attribute_name, compute, cross_process, lock_timeout
        )
        return value

    async def _get_or_compute(
        self,
        component: object,
        attribute_name: str,
        compute: Callable[[], Any],
        cross_process: bool,
        lock_timeout: float | None,
        key: str | None = None,
        value_needed: bool = True,
        known_missing: bool = False,
    ) -> tuple[Any, str]:
        """The value, and how it came: "hit", "computed" or "shared".

        Without `value_needed` a stored entry is only checked for, not read (its value
        comes back as None); `known_missing` skips the first check (warm did it in bulk).
        """
        await anyio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller starts nothing
        await self._ready()
        check_attribute_name(attribute_name)
        if key is None:
            key = self.key_of(component)
        while True:
            flight = Flight()
            # setdefault is atomic: of several threads or loops asking at once, one leads
            found = self._flights.setdefault((key, attribute_name), flight)
            if found is flight:
                break
            await found.wait()
            if found.outcome == "hit" and value_needed and not found.has_value:
                continue  # that caller only checked the entry exists: read it ourselves
            if found.outcome == "computed" or found.outcome == "hit":
                self.stats.shared += 1
                return found.value, "shared"
            if found.outcome == "failed":
                self.stats.shared += 1
                assert found.error is not None
                raise found.error
            # the leader was cancelled before it computed: try again, maybe as the leader
        try:
            value = (
                _MISSING if known_missing else await self._lookup(key, attribute_name, value_needed)
            )
            if value is _MISSING:
                lock = (
                    self.lock_raw(key, attribute_name, lock_timeout)
                    if cross_process
                    else (no_lock())
                )
                async with lock as locked:
                    if locked and cross_process:
                        # another process may have stored it while we waited for the lock
                        value = await self._lookup(key, attribute_name, value_needed)
                    if value is _MISSING:
                        # Runs to its end even when this caller is cancelled (asyncio's
                        # own cancellation included): the others get the value, and the
                        # cancellation reaches this caller afterwards.
                        ending = await run_to_end(
                            self._compute_and_put, compute, component, key, attribute_name
                        )
                        if ending.error is None:
                            flight.finish("computed", ending.value)
                            self.stats.misses += 1
                        else:
                            flight.finish("failed", None, ending.error)
                        value = ending.unwrap()
                        # a caller cancelled by anyio during the computation is cancelled now
                        await anyio.lowlevel.checkpoint_if_cancelled()
            if flight.outcome is None:
                flight.has_value = value_needed
                flight.finish("hit", value)
                self.stats.hits += 1
        except BaseException as error:
            if flight.outcome is None:
                computed = isinstance(error, Exception) and flight.computing
                flight.finish("failed" if computed else "abandoned", None, error)
            raise
        else:
            assert flight.outcome is not None
            return value, flight.outcome
        finally:
            if self._flights.get((key, attribute_name)) is flight:
                del self._flights[key, attribute_name]

    async def _compute_and_put(
        self, compute: Callable[[], Any], component: object, key: str, attribute_name: str
    ) -> Any:
        started = time.perf_counter()
        value = await self._run_compute(compute, key, attribute_name)
        seconds = time.perf_counter() - started
        await self._put(component, key, attribute_name, value, seconds)
        return value

    async def warm(
        self,
        components: Iterable[object],
        attribute_name: str,
        compute: Callable[[Any], Any],
        *,
        concurrency: int = 8,
        progress: bool | Callable[[WarmProgress], None] = False,
        processes: bool = False,
        stop_on_error: bool = False,
        cross_process: bool = True,
    ) -> WarmReport:
        """Make sure `attribute_name` is stored for every component; return a summary.

        Components already stored are skipped, repeated ones are computed once, and at
        most `concurrency` computations run at a time. `compute(component)` may be async,
        or plain (run in worker threads, or in worker processes with `processes=True` for
        CPU-bound work: then `compute` and the components must be picklable). A failure
        is recorded and the rest go on, unless `stop_on_error`, which cancels the rest and
        raises. `progress=True` shows a bar (needs ``tqdm``: ``adatastore[progress]``), or
        pass a callable that receives a `WarmProgress` after each component.
        """
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, not {concurrency}")
        await self._ready()
        check_attribute_name(attribute_name)
        components = list(components)
        failed: list[tuple[object, BaseException]] = []
        state = WarmProgress(total=len(components))
        report_progress = progress_reporter(progress, state)
        run = WarmRun(
            self,
            attribute_name,
            compute,
            concurrency=concurrency,
            processes=processes,
            stop_on_error=stop_on_error,
            cross_process=cross_process,
            state=state,
            report_progress=report_progress,
            failed=failed,
        )
        try:
            await run.run(components)
        except BaseExceptionGroup as group_error:
            first = group_error.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from group_error
        finally:
            report_progress(close=True)
        return WarmReport(
            computed=state.computed,
            already_stored=state.already_stored,
            duplicates=state.duplicates,
            failed=tuple(failed),
        )

    async def _lookup(self, key: str, attribute_name: str, value_needed: bool) -> Any:
        if value_needed:
            return await self._fetch(key, attribute_name)
        return None if await self.contains_raw(key, attribute_name) else _MISSING

    async def _run_compute(self, compute: Callable[[], Any], key: str, name: str) -> Any:
        flight = self._flights[key, name]
        flight.computing = True
        self.stats.computes += 1
        start = time.perf_counter()
        logger.debug("computing %s of %s", name, key)
        try:
            if is_async(compute):
                value = await compute()
            else:
                value = await anyio.to_thread.run_sync(call_boxed, compute)
                if isinstance(value, AwaitableResult):
                    value = await value.awaitable
        except Exception:
            self.stats.failures += 1
            raise
        finally:
            self.stats.compute_seconds += time.perf_counter() - start
        return value

    def _open_record(
        self, key: str, attribute_name: str, data: Buffer, verify: bool
    ) -> tuple[_record.Header, list[memoryview]]:
        """Check a record (checksum, signature, owner) and split it; nothing is decoded."""
        try:
            header, parts = _record.unseal(data, verify=verify)
        except _record.DamagedRecord as error:
            raise CorruptEntryError(key, attribute_name, str(error)) from None
        if self.signer is not None:
            if header.signature2 is not None:  # contents and provenance
                extra = header.provenance_json or b""
                signature = header.signature2
            elif header.signature is not None:  # adatastore 0.2: contents only
                extra, signature = None, header.signature
            else:
                raise IntegrityError(key, attribute_name, "the record is not signed")
            if not self.signer.verify(
                signature, key, attribute_name, header.serializer, parts, extra
            ):
                raise IntegrityError(
                    key,
                    attribute_name,
                    "the signature does not match (tampered or moved, or signed with another key)",
                )
        if header.attribute_name != attribute_name:
            raise CorruptEntryError(
                key, attribute_name, f"the record belongs to {header.attribute_name!r}"
            )
        return header, parts

    async def _checked(
        self, key: str, attribute_name: str, data: Buffer, verify: bool
    ) -> tuple[_record.Header, list[memoryview]]:
        if memoryview(data).nbytes >= _OFFLOAD_BYTES:
            return await anyio.to_thread.run_sync(
                self._open_record, key, attribute_name, data, verify
            )
        return self._open_record(key, attribute_name, data, verify)

    async def _decode(self, key: str, attribute_name: str, data: Buffer) -> Any:
        header, parts = await self._checked(key, attribute_name, data, self.verify_on_read)
        return self._loads(key, attribute_name, header, parts)

    def _loads(
        self, key: str, attribute_name: str, header: _record.Header, parts: list[memoryview]
    ) -> Any:
        if header.serializer != self.serializer.name:
            raise SerializationError(
                f"entry {attribute_name!r} of {key!r} was written by the "
                f"{header.serializer!r} serializer; this store uses {self.serializer.name!r}"
            )
        return self.serializer.loads(parts)

    # -- the direct blocking path ---------------------------------------------------------------
    #
    # Back-ends whose raw I/O is plain blocking calls (files) set `supports_blocking` and
    # implement the ``*_raw_blocking`` methods; the blocking classes then run store,
    # retrieve, retrieve_many and contains in the caller's thread, with no hop to
    # adatastore's loop. Back-ends that can only read that way (SQLite, whose writes go
    # through the loop's single writer connection) set `supports_blocking_reads` and
    # implement the read methods.

    supports_blocking: ClassVar[bool] = False
    supports_blocking_reads: ClassVar[bool] = False

    def open_raw_blocking(self) -> None:
        raise NotImplementedError

    def write_raw_blocking(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        raise NotImplementedError

    def read_raw_blocking(self, key: str, attribute_name: str) -> Buffer | None:
        raise NotImplementedError

    def contains_raw_blocking(self, key: str, attribute_name: str) -> bool:
        raise NotImplementedError

    def read_many_raw_blocking(self, pairs: Sequence[tuple[str, str]]) -> list[Buffer | None]:
        """The records of several (key, name) pairs; by default `read_raw_blocking` each."""
        return [self.read_raw_blocking(key, name) for key, name in pairs]

    def close_raw_blocking(self) -> None:  # noqa: B027 - optional hook
        """Release resources, from a blocking caller."""

    def open_blocking(self) -> None:
        """`open`, in the caller's thread."""
        self._check_usable_blocking()
        if not self._opened:
            self.open_raw_blocking()
            self._opened = True

    def close_blocking(self) -> None:
        """`aclose`, in the caller's thread."""
        if not self._closed:
            self._closed = True
            self.close_raw_blocking()

    def store_blocking(self, component: object, attribute_name: str, data: Any) -> None:
        """`store`, in the caller's thread."""
        self.open_blocking()
        check_attribute_name(attribute_name)
        key = self.key_of(component)
        start = time.perf_counter()
        record, _, seal = self._sealing(component, key, attribute_name, data)
        sealed = seal()
        self.write_raw_blocking(key, attribute_name, sealed, record)
        self._count_store(key, attribute_name, sealed, time.perf_counter() - start)

    def _check_usable_blocking(self) -> None:
        self._check_process()
        if self._closed:
            raise StoreClosedError(f"{self!r} is closed")

    def retrieve_blocking(self, component: object, attribute_name: str, default: Any) -> Any:
        """`retrieve`, in the caller's thread."""
        self.open_blocking()
        check_attribute_name(attribute_name)
        key = self.key_of(component)
        start = time.perf_counter()
        data = self.read_raw_blocking(key, attribute_name)
        if data is None:
            self.stats.misses += 1
            return default
        header, parts = self._open_record(key, attribute_name, data, self.verify_on_read)
        value = self._loads(key, attribute_name, header, parts)
        self.stats.hits += 1
        self.stats.bytes_read += memoryview(data).nbytes
        self.stats.read_seconds += time.perf_counter() - start
        return value

    def retrieve_many_blocking(
        self, requests: Iterable[tuple[object, str]], default: Any = None
    ) -> list[Any]:
        """`retrieve_many`, in the caller's thread."""
        self.open_blocking()
        pairs = self._request_pairs(requests)
        start = time.perf_counter()
        records = self.read_many_raw_blocking(pairs)
        values = []
        for (key, attribute_name), data in zip(pairs, records, strict=True):
            if data is None:
                self.stats.misses += 1
                values.append(default)
                continue
            header, parts = self._open_record(key, attribute_name, data, self.verify_on_read)
            values.append(self._loads(key, attribute_name, header, parts))
            self.stats.hits += 1
            self.stats.bytes_read += memoryview(data).nbytes
        self.stats.read_seconds += time.perf_counter() - start
        return values

    def contains_blocking(self, component: object, attribute_name: str) -> bool:
        """`contains`, in the caller's thread."""
        self.open_blocking()
        check_attribute_name(attribute_name)
        return self.contains_raw_blocking(self.key_of(component), attribute_name)

    async def contains(self, component: object, attribute_name: str) -> bool:
        """Whether the attribute of `component` is stored."""
        await self._ready()
        check_attribute_name(attribute_name)
        return await self.contains_raw(self.key_of(component), attribute_name)

    async def delete(self, component: object, attribute_name: str | None = None) -> int:
        """Delete one attribute of `component`, or all of them; return how many went."""
        await self._ready()
        if attribute_name is not None:
            check_attribute_name(attribute_name)
        return await self.delete_raw(self.key_of(component), attribute_name)

    async def list_contents(self) -> list[Entry]:
        """Describe every stored entry, sorted by key then attribute name."""
        await self._ready()
        entries = await self.list_raw()
        return sorted(entries, key=lambda entry: (entry.key, entry.attribute_name))

    async def verify(
        self, *, repair: bool = False, progress: Callable[[int, int], None] | None = None
    ) -> VerifyReport:
        """Check every entry's checksum (and signature, with a signing key).

        Nothing is deserialized. With `repair`, damaged entries are deleted (they are
        caches: the next computation stores them again). `progress(done, total)` is
        called after each entry.
        """
        await self._ready()
        damaged: list[DamagedEntry] = []
        checked = 0
        entries = await self.list_raw()
        for done, entry in enumerate(entries, 1):
            if progress is not None:
                progress(done, len(entries))
            try:
                data = await self.read_raw(entry.key, entry.attribute_name)
            except DataStoreError as error:
                damaged.append(DamagedEntry(entry.key, entry.attribute_name, str(error)))
                continue
            if data is None:
                continue  # deleted meanwhile
            checked += 1
            try:
                await self._checked(entry.key, entry.attribute_name, data, True)
            except (CorruptEntryError, IntegrityError) as error:
                damaged.append(DamagedEntry(entry.key, entry.attribute_name, error.reason))
        planted = await self.planted_raw()
        removed = 0
        if repair:
            for item in damaged:
                removed += await self.delete_raw(item.key, item.attribute_name)
            for item in planted:
                removed += await self.remove_planted_raw(item)
        damaged += planted
        return VerifyReport(checked, tuple(damaged), removed)

    async def cleanup(self, *, older_than: float = 3600.0) -> int:
        """Remove what interrupted writes left behind (temp files, unreferenced payloads).

        Only leftovers older than `older_than` seconds go, so writes in progress in other
        processes are safe. Returns how many were removed.
        """
        await self._ready()
        return await self.cleanup_raw(older_than)

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__}{state}>"
