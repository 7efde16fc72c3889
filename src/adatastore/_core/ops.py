"""The operation core: each direct operation written once, run by an async or a blocking
driver.

An operation is a generator (psycopg 3's model: ``generators.py`` and ``waiting.py``):
it does all the thinking — names checked, keys made, values sealed or decoded, stats
counted, hits and misses logged — and *yields* what it needs done: a read, a write, a
check, or CPU work worth moving off the event loop (`OFFLOAD`). A driver does those
things and sends the results back: `drive` awaits the back-end's async methods and runs
`OFFLOAD` in a worker thread; `drive_blocking` calls the back-end's ``blocking_*`` methods
and runs `OFFLOAD` inline. Both paths therefore count, log and fail the same way.

The price is a generator step or two: 1-3% more instructions per small-value operation
than 0.2's hand-written twins (``benchmarks/instructions.py``, callgrind).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import anyio.to_thread

from .._codec import record as _record
from .._codec.sealing import OFFLOAD_BYTES, Codec, is_mapped
from .._runtime import portal as _portal
from .._runtime.clock import clock
from ..backend import Backend, MapMode, RecordWrite
from ..records import Entry
from ..serializers import Buffer
from ..stats import Stats, logger
from .identity import Identity, check_attribute_name
from .limits import Limiter
from .options import map_mode
from .policy import Policy
from .requests import (
    CONTAINS,
    CONTAINS_MANY,
    DELETE_LISTED,
    ENTRIES,
    EVICT,
    LAST_USED,
    OFFLOAD,
    PLANTED,
    READ,
    READ_ERRORS,
    READ_MANY,
    READ_MANY_MAPPED,
    READ_MAPPED,
    READ_OR_ERROR,
    REMOVE_PLANTED,
    TOUCH,
    WRITE,
    WRITE_MANY,
    Operation,
    Request,
)
from .staleness import EXPIRED, LEARN, code_known, code_origin, hit_state, learn

__all__ = [
    "MISSING",
    "Context",
    "Operation",
    "contains",
    "drive",
    "drive_blocking",
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
DEFAULT_POLICY = Policy()


class Context:
    """What operations of one store share: its identity, codec, stats and policy, and
    how it reads records by default (`mmap`: None, or mapped read-only or copy-on-write)."""

    __slots__ = ("codec", "identity", "limiter", "mmap", "policy", "stats")

    def __init__(
        self,
        identity: Identity,
        codec: Codec,
        stats: Stats,
        mmap: MapMode | None = None,
        policy: Policy = DEFAULT_POLICY,
    ) -> None:
        self.identity, self.codec, self.stats = identity, codec, stats
        self.mmap, self.policy = mmap, policy
        self.limiter = Limiter(policy, stats) if policy.limited else None

    def map_mode(self, mmap: object) -> MapMode | None:
        """The mapping of one call: its `mmap` argument (None: the store's default)."""
        return self.mmap if mmap is None else map_mode(mmap)


# -- the drivers --------------------------------------------------------------------------------


async def drive(operation: Operation[T], backend: Backend) -> T:
    """Run `operation` against the back-end's async methods."""
    result: Any = None
    try:
        while True:
            request = operation.send(result)
            kind = request[0]
            if kind is READ:
                result = await backend.read(request[1], request[2])
            elif kind is WRITE:
                await backend.write(*request[1:])
                result = None
            elif kind is CONTAINS:
                result = await backend.contains(request[1], request[2])
            elif kind is READ_MANY:
                result = await backend.read_many(request[1])
            elif kind is WRITE_MANY:
                await backend.write_many(request[1])
                result = None
            elif kind is READ_MAPPED:
                result = await backend.read_mapped(*request[1:])
            elif kind is READ_MANY_MAPPED:
                result = await backend.read_many_mapped(*request[1:])
            elif kind is TOUCH:
                await backend.touch_many(request[1])
                result = None
            elif kind is OFFLOAD:
                result = await anyio.to_thread.run_sync(*request[1:])
            else:
                result = await _rare(backend, request)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    except BaseException:
        operation.close()  # its `finally` blocks run now (a trim's lock is let go)
        raise


def drive_blocking(operation: Operation[T], backend: Backend) -> T:
    """Run `operation` in the calling thread against the back-end's blocking methods
    (the rare requests, which have no blocking twin — listing, eviction, which takes
    async locks — run on the portal's event loop)."""
    result: Any = None
    try:
        while True:
            request = operation.send(result)
            kind = request[0]
            if kind is READ:
                result = backend.blocking_read(request[1], request[2])
            elif kind is WRITE:
                backend.blocking_write(*request[1:])
                result = None
            elif kind is CONTAINS:
                result = backend.blocking_contains(request[1], request[2])
            elif kind is READ_MANY:
                result = backend.blocking_read_many(request[1])
            elif kind is WRITE_MANY:
                backend.blocking_write_many(request[1])
                result = None
            elif kind is READ_MAPPED:
                result = backend.blocking_read_mapped(*request[1:])
            elif kind is READ_MANY_MAPPED:
                result = backend.blocking_read_many_mapped(*request[1:])
            elif kind is TOUCH:
                backend.blocking_touch_many(request[1])
                result = None
            elif kind is OFFLOAD:
                result = request[1](*request[2:])
            else:  # no blocking twin: the async method, on the portal's event loop
                result = _portal.call(_rare, backend, request)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    except BaseException:
        operation.close()
        raise


async def _rare(backend: Backend, request: Request) -> Any:
    """The requests of eviction, checks and `verify`, for both drivers: none is on the
    path of a small hit or store, so one async dispatch serves both."""
    kind = request[0]
    if kind is CONTAINS_MANY:
        return await backend.contains_many(request[1])
    if kind is ENTRIES:
        return await backend.entries()
    if kind is LAST_USED:
        return await backend.last_used()
    if kind is EVICT:
        return await evict(backend, request[1])
    if kind is DELETE_LISTED:
        return await backend.delete_listed(request[1])
    if kind is PLANTED:
        return await backend.planted()
    if kind is REMOVE_PLANTED:
        return await backend.remove_planted(request[1])
    if kind is READ_OR_ERROR:
        try:
            return await backend.read(request[1], request[2])
        except READ_ERRORS as error:
            return error
    raise AssertionError(f"no driver for the request {kind!r}")


async def evict(backend: Backend, victims: Sequence[Entry]) -> list[Entry]:
    """`EVICT`: delete the entries whose lock can be taken at once and that are still the
    records planned (`Backend.delete_listed`); the others (being computed, or stored again
    since the plan) stay. Returns those deleted."""
    async with contextlib.AsyncExitStack() as held:
        free = []
        for entry in victims:
            lock = backend.lock(entry.key, entry.attribute_name, 0)
            if await held.enter_async_context(lock):
                free.append(entry)
        return await backend.delete_listed(free) if free else []


# -- the operations -----------------------------------------------------------------------------


def seal(
    context: Context,
    component: object,
    attribute_name: str,
    data: Any,
    compute_seconds: float | None = None,
    compute: Callable[..., Any] | None = None,
    expire: float | None = None,
) -> Operation[RecordWrite]:
    """(key, name, sealed record, component record) of a value; large ones offloaded.
    Its provenance names the code (`compute`: the function that computed it) and when it
    expires (`expire` seconds from now)."""
    graph = context.policy.key_includes_code  # the inputs' types are keyed by code too
    if not code_known(component, compute, graph):
        yield OFFLOAD, learn, component, compute, graph  # file I/O, once per class
    key, record = context.identity.keyed(component)
    origin = code_origin(component, compute)
    expires = None if expire is None else clock() + expire
    dumped = context.codec.dump(key, attribute_name, data, compute_seconds, origin, expires)
    sealed = (yield OFFLOAD, dumped.seal) if dumped.large else dumped.seal()
    return key, attribute_name, sealed, record


def _count_stores(
    context: Context, writes: Sequence[RecordWrite], seconds: float
) -> Limiter | None:
    """Count what was written; the store's limiter when its limits are due a look
    (`Limiter.trim`)."""
    stats = context.stats
    share = seconds / max(len(writes), 1)  # a bulk write's time shared out
    sizes = []
    for key, name, sealed, _ in writes:
        size = _record.sealed_size(sealed)
        sizes.append(size)
        stats.stores += 1
        stats.bytes_written += size
        stats.write_seconds += share
        logger.debug("stored %s of %s (%d bytes)", name, key, size)
    limiter = context.limiter
    return limiter if limiter is not None and limiter.wrote(sizes) else None


def store(
    context: Context,
    component: object,
    attribute_name: str,
    data: Any,
    compute_seconds: float | None = None,
    compute: Callable[..., Any] | None = None,
    expire: float | None = None,
) -> Operation[None]:
    """Store `data` as the attribute of `component`, replacing any."""
    check_attribute_name(attribute_name)
    start = time.perf_counter()
    write = yield from seal(
        context, component, attribute_name, data, compute_seconds, compute, expire
    )
    yield (WRITE, *write)
    limiter = _count_stores(context, [write], time.perf_counter() - start)
    if limiter is not None:
        yield from limiter.trim()


def store_many(
    context: Context, items: Iterable[tuple[object, str, Any]], expire: float | None = None
) -> Operation[None]:
    """Store several ``(component, attribute_name, data)``: all checked and sealed before
    anything is written, then written in one go."""
    items = list(items)
    for _, attribute_name, _ in items:
        check_attribute_name(attribute_name)
    start = time.perf_counter()
    writes = []
    for component, attribute_name, data in items:
        writes.append(
            (yield from seal(context, component, attribute_name, data, None, None, expire))
        )
    yield WRITE_MANY, writes
    limiter = _count_stores(context, writes, time.perf_counter() - start)
    if limiter is not None:
        yield from limiter.trim()


def write_sealed(context: Context, writes: Sequence[RecordWrite]) -> Operation[None]:
    """Write records `seal` made (warm seals as results arrive), in one go."""
    start = time.perf_counter()
    yield WRITE_MANY, writes
    limiter = _count_stores(context, writes, time.perf_counter() - start)
    if limiter is not None:
        yield from limiter.trim()


def _decoded(
    context: Context, key: str, name: str, data: Buffer, mode: MapMode | None = None
) -> Operation[tuple[_record.Header, Any]]:
    """The header and value of a record: large ones decoded off the event loop (not a
    map that decoding barely touches)."""
    codec = context.codec
    read_only = mode == "r"
    # a map is opened on the loop when nothing reads it whole (no digest, no signature)
    light = codec.signer is None and is_mapped(data)
    if memoryview(data).nbytes >= OFFLOAD_BYTES and not light:
        decoded: tuple[_record.Header, Any] = yield (
            OFFLOAD,
            codec.decode,
            key,
            name,
            data,
            read_only,
        )
        return decoded
    header, parts = codec.open(key, name, data)
    # decompressed in a worker thread whatever the size; a map's in-band pickle too when
    # large (a big dict of Python objects is read whole to be decoded)
    if header.compression or (light and parts and parts[0].nbytes >= OFFLOAD_BYTES):
        return header, (yield OFFLOAD, codec.loads, key, name, header, parts, read_only)
    return header, codec.loads(key, name, header, parts, read_only)


def fetch(
    context: Context,
    key: str,
    attribute_name: str,
    mode: MapMode | None = None,
    component: object = None,
    compute: Callable[..., Any] | None = None,
) -> Operation[Any]:
    """The stored value, or `MISSING`; counts bytes and time, not hits or misses.
    `component` and `compute` (when given) are checked against the entry's code."""
    return _reading(context, component, key, attribute_name, MISSING, mode, compute)


def retrieve(
    context: Context,
    component: object,
    attribute_name: str,
    default: Any = None,
    mode: MapMode | None = None,
) -> Operation[Any]:
    """The stored attribute, or `default` when nothing is stored; `mode` maps files."""
    return _reading(context, component, None, attribute_name, default, mode)


def _reading(
    context: Context,
    component: object,
    key: str | None,
    attribute_name: str,
    default: Any,
    mode: MapMode | None,
    compute: Callable[..., Any] | None = None,
) -> Operation[Any]:
    """`retrieve` (no key: the component checked and keyed, hits and misses counted) or
    `fetch` (a key). One generator for both, checks inside it (they run when the driver
    starts it, after the store's own checks): a generator per layer cost ~3,000
    instructions a retrieve (callgrind)."""
    retrieving = key is None
    if key is None:
        check_attribute_name(attribute_name)
        if context.policy.key_includes_code and not code_known(component, None, True):
            yield OFFLOAD, learn, component, None, True
        key = context.identity.key(component)
    start = time.perf_counter()
    if mode is None:
        data = yield READ, key, attribute_name
    else:
        data = yield READ_MAPPED, key, attribute_name, mode
    stats = context.stats
    if data is None:
        if retrieving:
            stats.misses += 1
            logger.debug("miss: %s of %s", attribute_name, key)
        return default
    size = memoryview(data).nbytes
    codec = context.codec
    if size < OFFLOAD_BYTES and mode is None:
        header, parts = codec.open(key, attribute_name, data)
        if header.compression:
            value = yield OFFLOAD, codec.loads, key, attribute_name, header, parts
        else:
            value = codec.loads(key, attribute_name, header, parts)
    else:
        header, value = yield from _decoded(context, key, attribute_name, data, mode)
    state = hit_state(context.policy, component, compute, header)
    if state == LEARN:
        yield OFFLOAD, learn, component, compute, False
        state = hit_state(context.policy, component, compute, header)
    if state == EXPIRED:
        if retrieving:
            stats.misses += 1
            logger.debug("miss (expired): %s of %s", attribute_name, key)
        return default
    stats.bytes_read += size
    stats.read_seconds += time.perf_counter() - start
    if retrieving:
        stats.hits += 1
        logger.debug("hit: %s of %s", attribute_name, key)
    limiter = context.limiter
    if limiter is not None and limiter.touch(key, attribute_name):
        yield TOUCH, limiter.take()
    return value


def retrieve_many(
    context: Context,
    requests: Iterable[tuple[object, str]],
    default: Any = None,
    mode: MapMode | None = None,
) -> Operation[list[Any]]:
    """Several attributes at once, in order; `default` where nothing is stored."""
    requests = list(requests)
    if context.policy.key_includes_code:
        for component, _ in requests:
            if not code_known(component, None, True):
                yield OFFLOAD, learn, component, None, True
    pairs = context.identity.pairs(requests)
    start = time.perf_counter()
    if mode is None:
        records = yield READ_MANY, pairs
    else:
        records = yield READ_MANY_MAPPED, pairs, mode
    stats, values = context.stats, []
    for (component, _), (key, attribute_name), data in zip(requests, pairs, records, strict=True):
        if data is not None:
            if mode is None and memoryview(data).nbytes < OFFLOAD_BYTES:
                # the common small record decoded here, without a generator per entry
                header, parts = context.codec.open(key, attribute_name, data)
                if header.compression:
                    value = yield OFFLOAD, context.codec.loads, key, attribute_name, header, parts
                else:
                    value = context.codec.loads(key, attribute_name, header, parts)
            else:
                header, value = yield from _decoded(context, key, attribute_name, data, mode)
            state = hit_state(context.policy, component, None, header)
            if state == LEARN:
                yield OFFLOAD, learn, component, None, False
                state = hit_state(context.policy, component, None, header)
            if state == EXPIRED:
                stats.misses += 1
                logger.debug("miss (expired): %s of %s", attribute_name, key)
                values.append(default)
                continue
        if data is None:
            stats.misses += 1
            logger.debug("miss: %s of %s", attribute_name, key)
            values.append(default)
            continue
        values.append(value)
        stats.hits += 1
        logger.debug("hit: %s of %s", attribute_name, key)
        if context.limiter is not None and context.limiter.touch(key, attribute_name):
            yield TOUCH, context.limiter.take()
        stats.bytes_read += memoryview(data).nbytes
    stats.read_seconds += time.perf_counter() - start
    return values


def contains(context: Context, component: object, attribute_name: str) -> Operation[bool]:
    """Whether the attribute of `component` is stored."""
    check_attribute_name(attribute_name)
    if context.policy.key_includes_code and not code_known(component, None, True):
        yield OFFLOAD, learn, component, None, True
    found: bool = yield CONTAINS, context.identity.key(component), attribute_name
    return found
