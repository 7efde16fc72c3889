"""The operation core: each direct operation written once, run by an async or a blocking
driver.

An operation is a generator (psycopg 3's model: ``generators.py`` and ``waiting.py``):
it does all the thinking — names checked, keys made, values sealed or decoded, stats
counted, hits and misses logged — and *yields* what it needs done: a read, a write, a
check, or CPU work worth moving off the event loop (`Offload`). A driver does those
things and sends the results back: `drive` awaits the back-end's async methods and runs
`Offload` in a worker thread; `drive_blocking` calls the back-end's ``blocking_*`` methods
and runs `Offload` inline. Both paths therefore count, log and fail the same way.

The price is a few generator steps: about 1 µs per operation here, against ~37 µs for a
blocking retrieve of a small value (measured in ``benchmarks/checkouts.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, TypeVar

import anyio.to_thread

from . import _record
from ._codec import OFFLOAD_BYTES, Codec
from ._identity import Identity, check_attribute_name
from .backend import Backend, RecordWrite
from .records import ComponentRecord
from .serializers import Buffer
from .stats import Stats, logger

__all__ = [
    "MISSING",
    "Context",
    "Operation",
    "contains",
    "drive",
    "drive_blocking",
    "exists",
    "fetch",
    "retrieve",
    "retrieve_many",
    "seal",
    "store",
    "store_many",
    "write_sealed",
]

T = TypeVar("T")
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>"})()


# -- what an operation asks for ---------------------------------------------------------------


class Read:
    __slots__ = ("key", "name")

    def __init__(self, key: str, name: str) -> None:
        self.key, self.name = key, name


class ReadMany:
    __slots__ = ("pairs",)

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = pairs


class Contains:
    __slots__ = ("key", "name")

    def __init__(self, key: str, name: str) -> None:
        self.key, self.name = key, name


class Write:
    __slots__ = ("component", "key", "name", "record")

    def __init__(
        self, key: str, name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        self.key, self.name, self.record, self.component = key, name, record, component


class WriteMany:
    __slots__ = ("records",)

    def __init__(self, records: Sequence[RecordWrite]) -> None:
        self.records = records


class Offload:
    """CPU work (sealing or checking a large record): a worker thread on the async path."""

    __slots__ = ("args", "function")

    def __init__(self, function: Callable[..., Any], *args: Any) -> None:
        self.function, self.args = function, args


Request = Read | ReadMany | Contains | Write | WriteMany | Offload
Operation = Generator[Request, Any, T]


class Context:
    """What operations of one store share: its identity, codec and stats."""

    __slots__ = ("codec", "identity", "stats")

    def __init__(self, identity: Identity, codec: Codec, stats: Stats) -> None:
        self.identity, self.codec, self.stats = identity, codec, stats


# -- the drivers --------------------------------------------------------------------------------


async def drive(operation: Operation[T], backend: Backend) -> T:
    """Run `operation` against the back-end's async methods."""
    result: Any = None
    try:
        while True:
            request = operation.send(result)
            if isinstance(request, Read):
                result = await backend.read(request.key, request.name)
            elif isinstance(request, Write):
                await backend.write(request.key, request.name, request.record, request.component)
                result = None
            elif isinstance(request, Contains):
                result = await backend.contains(request.key, request.name)
            elif isinstance(request, ReadMany):
                result = await backend.read_many(request.pairs)
            elif isinstance(request, WriteMany):
                await backend.write_many(request.records)
                result = None
            else:
                result = await anyio.to_thread.run_sync(request.function, *request.args)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def drive_blocking(operation: Operation[T], backend: Backend) -> T:
    """Run `operation` in the calling thread against the back-end's blocking methods."""
    result: Any = None
    try:
        while True:
            request = operation.send(result)
            if isinstance(request, Read):
                result = backend.blocking_read(request.key, request.name)
            elif isinstance(request, Write):
                backend.blocking_write(request.key, request.name, request.record, request.component)
                result = None
            elif isinstance(request, Contains):
                result = backend.blocking_contains(request.key, request.name)
            elif isinstance(request, ReadMany):
                result = backend.blocking_read_many(request.pairs)
            elif isinstance(request, WriteMany):
                backend.blocking_write_many(request.records)
                result = None
            else:
                result = request.function(*request.args)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


# -- the operations -----------------------------------------------------------------------------


def seal(
    context: Context,
    component: object,
    attribute_name: str,
    data: Any,
    compute_seconds: float | None = None,
) -> Operation[RecordWrite]:
    """(key, name, sealed record, component record) of a value; large ones offloaded."""
    key, record = context.identity.keyed(component)
    dumped = context.codec.dump(key, attribute_name, data, compute_seconds)
    sealed = (yield Offload(dumped.seal)) if dumped.large else dumped.seal()
    return key, attribute_name, sealed, record


def _count_stores(context: Context, writes: Sequence[RecordWrite], seconds: float) -> None:
    stats = context.stats
    share = seconds / max(len(writes), 1)  # a bulk write's time shared out
    for key, name, sealed, _ in writes:
        size = _record.sealed_size(sealed)
        stats.stores += 1
        stats.bytes_written += size
        stats.write_seconds += share
        logger.debug("stored %s of %s (%d bytes)", name, key, size)


def store(
    context: Context,
    component: object,
    attribute_name: str,
    data: Any,
    compute_seconds: float | None = None,
) -> Operation[None]:
    """Store `data` as the attribute of `component`, replacing any."""
    check_attribute_name(attribute_name)
    start = time.perf_counter()
    write = yield from seal(context, component, attribute_name, data, compute_seconds)
    yield Write(*write)
    _count_stores(context, [write], time.perf_counter() - start)


def store_many(context: Context, items: Iterable[tuple[object, str, Any]]) -> Operation[None]:
    """Store several ``(component, attribute_name, data)``: all checked and sealed before
    anything is written, then written in one go."""
    items = list(items)
    for _, attribute_name, _ in items:
        check_attribute_name(attribute_name)
    start = time.perf_counter()
    writes = []
    for component, attribute_name, data in items:
        writes.append((yield from seal(context, component, attribute_name, data)))
    yield WriteMany(writes)
    _count_stores(context, writes, time.perf_counter() - start)


def write_sealed(context: Context, writes: Sequence[RecordWrite]) -> Operation[None]:
    """Write records `seal` made (warm seals as results arrive), in one go."""
    start = time.perf_counter()
    yield WriteMany(writes)
    _count_stores(context, writes, time.perf_counter() - start)


def _decoded(context: Context, key: str, name: str, data: Buffer) -> Operation[Any]:
    codec = context.codec
    if memoryview(data).nbytes >= OFFLOAD_BYTES:
        header, parts = yield Offload(codec.open, key, name, data)
    else:
        header, parts = codec.open(key, name, data)
    return codec.loads(key, name, header, parts)


def fetch(context: Context, key: str, attribute_name: str) -> Operation[Any]:
    """The stored value, or `MISSING`; counts bytes and time, not hits or misses."""
    start = time.perf_counter()
    data = yield Read(key, attribute_name)
    if data is None:
        return MISSING
    value = yield from _decoded(context, key, attribute_name, data)
    stats = context.stats
    stats.bytes_read += memoryview(data).nbytes
    stats.read_seconds += time.perf_counter() - start
    return value


def retrieve(
    context: Context, component: object, attribute_name: str, default: Any = None
) -> Operation[Any]:
    """The stored attribute, or `default` when nothing is stored."""
    check_attribute_name(attribute_name)
    key = context.identity.key(component)
    value = yield from fetch(context, key, attribute_name)
    if value is MISSING:
        context.stats.misses += 1
        logger.debug("miss: %s of %s", attribute_name, key)
        return default
    context.stats.hits += 1
    logger.debug("hit: %s of %s", attribute_name, key)
    return value


def retrieve_many(
    context: Context, requests: Iterable[tuple[object, str]], default: Any = None
) -> Operation[list[Any]]:
    """Several attributes at once, in order; `default` where nothing is stored."""
    pairs = context.identity.pairs(requests)
    start = time.perf_counter()
    records = yield ReadMany(pairs)
    stats, values = context.stats, []
    for (key, attribute_name), data in zip(pairs, records, strict=True):
        if data is None:
            stats.misses += 1
            values.append(default)
            continue
        values.append((yield from _decoded(context, key, attribute_name, data)))
        stats.hits += 1
        stats.bytes_read += memoryview(data).nbytes
    stats.read_seconds += time.perf_counter() - start
    return values


def contains(context: Context, component: object, attribute_name: str) -> Operation[bool]:
    """Whether the attribute of `component` is stored."""
    check_attribute_name(attribute_name)
    found: bool = yield Contains(context.identity.key(component), attribute_name)
    return found


def exists(key: str, attribute_name: str) -> Operation[bool]:
    """Whether (key, name) is stored (keys known already)."""
    found: bool = yield Contains(key, attribute_name)
    return found
