"""`warm` on an executor: what runs in the workers, and what the calling process does.

When the workers can open the store (its `StoreSpec`: SQLite or files on a disk they
share, a database server), each task opens it once per worker process and runs
`get_or_compute` there, under the store's cross-process lock, and sends back only a
`TaskResult` (key, outcome, seconds, bytes, worker): values never travel through the
caller. The caller (`RemoteWarm`) makes the keys a chunk at a time, skips what is stored
with one existence check per chunk, and keeps at most `concurrency` tasks in flight, so
its memory does not grow with the sweep. The store's locks, not the caller, decide who
computes an entry: two callers warming overlapping sweeps compute each entry once.

When they cannot (``memory://``, or ``store_in_workers=False``), `RemoteCompute` is the
compute function of the local pipeline (``_warm.WarmRun``): each computation runs on the
executor and its value comes back, and the caller stores the values in groups.

A task whose worker process died (a broken pool) is submitted once more; Dask's scheduler
does that itself (see ``_executors``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import os
import pickle
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from .._runtime import portal as _portal
from .._runtime.waiting import Waiter
from ..errors import ConfigurationError, DataStoreError, ExecutorError
from ..records import WarmProgress, WorkerTally
from .executors import Inbox, Pool, worker_died
from .flights import get_or_compute, recomputed_bad
from .host import StoreHost
from .spec import StoreSpec, worker_store
from .warm import WarmHost
from .warm_options import WarmOptions

__all__ = [
    "RemoteCompute",
    "RemoteWarm",
    "Tallies",
    "TaskResult",
    "check_picklable",
    "compute_in_worker",
    "store_in_worker",
]


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What a worker sends back for one component: small, whatever the value's size."""

    key: str
    outcome: str
    """``computed``, ``hit`` (found stored), ``shared`` (another thread's) or ``failed``."""
    seconds: float
    size: int
    """Bytes of the record stored (0 when nothing was)."""
    worker: str
    error: BaseException | None = None
    value: Any = None
    """The value, only when the caller stores it (`compute_in_worker`)."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _portable(error: BaseException) -> BaseException:
    """`error`, or a `RuntimeError` saying what it was when it cannot be pickled."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__qualname__}: {error} (could not be pickled)")
    return error


# -- in the workers ---------------------------------------------------------------------------


class _Sized:
    """A worker store's `ComputeHost` whose `put` notes the size of the record it stores.
    The rest is the host's own, bound here: the lookup's signature is written once, in
    `ComputeHost`, and implemented once, by `StoreHost`."""

    def __init__(self, host: StoreHost) -> None:
        self.host = host
        self.size = 0
        self.stats = host.stats
        self.flights = host.flights
        self.lock = host.lock
        self.lookup = host.lookup

    async def put(
        self,
        component: object,
        key: str,
        attribute_name: str,
        value: Any,
        seconds: float,
        compute: Callable[..., Any] | None = None,
    ) -> None:
        write = await self.host.seal(component, attribute_name, value, seconds, compute)
        self.size = sum(memoryview(part).nbytes for part in write[2])
        await self.host.write_many([write])


async def _get_or_compute(
    spec: StoreSpec,
    attribute_name: str,
    compute: Callable[[Any], Any],
    component: object,
    lock_timeout: float | None,
) -> TaskResult:
    store = worker_store(spec)
    await store.lifecycle.ready()
    host = _Sized(store.host)
    key = store.host.key(component)
    started = time.perf_counter()
    try:
        _, outcome = await get_or_compute(
            host,
            component,
            key,
            attribute_name,
            functools.partial(compute, component),
            lock_timeout=lock_timeout,
            value_needed=False,
        )
    except Exception as error:
        seconds = time.perf_counter() - started
        return TaskResult(key, "failed", seconds, 0, worker_name(), _portable(error))
    seconds = time.perf_counter() - started
    return TaskResult(key, outcome.value, seconds, host.size, worker_name())


def store_in_worker(
    spec: StoreSpec,
    attribute_name: str,
    compute: Callable[[Any], Any],
    components: Sequence[object],
    lock_timeout: float | None,
) -> list[TaskResult]:
    """A task: get or compute and store the attribute of each component, here."""
    worker_store(spec)  # a store that cannot open fails the task, not each component
    return [
        _portal.call(_get_or_compute, spec, attribute_name, compute, component, lock_timeout)
        for component in components
    ]


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def compute_in_worker(compute: Callable[[Any], Any], component: object) -> TaskResult:
    """A task: compute the value and send it back (the caller stores it)."""
    started = time.perf_counter()
    try:
        value = compute(component)
        if inspect.isawaitable(value):  # an async compute: awaited here, as in the store
            value = asyncio.run(_awaited(value))
    except Exception as error:
        seconds = time.perf_counter() - started
        return TaskResult("", "failed", seconds, 0, worker_name(), _portable(error))
    return TaskResult("", "computed", time.perf_counter() - started, 0, worker_name(), None, value)


# -- in the calling process -------------------------------------------------------------------


@dataclass(slots=True)
class Tallies:
    """Per-worker counts: the report's `WorkerTally` mapping, kept up to date."""

    by_worker: dict[str, WorkerTally] = field(default_factory=dict)

    def add(self, result: TaskResult) -> None:
        old = self.by_worker.get(result.worker, WorkerTally())
        outcome = result.outcome
        self.by_worker[result.worker] = WorkerTally(
            computed=old.computed + (outcome == "computed"),
            already_stored=old.already_stored + (outcome not in ("computed", "failed")),
            failed=old.failed + (outcome == "failed"),
            seconds=old.seconds + result.seconds,
            bytes=old.bytes + result.size,
        )

    def report(self) -> dict[str, WorkerTally]:
        return dict(sorted(self.by_worker.items()))


def check_picklable(pool: Pool, compute: object, components: Sequence[object]) -> None:
    """Refuse, before anything is submitted, what the executor could not send."""
    if pool.dumps(None) is None:  # threads: nothing is pickled
        return
    what = f"the workers of {pool.description}"
    try:
        pool.dumps(compute)
    except Exception as error:
        raise ConfigurationError(
            f"the compute function {compute!r} cannot be sent to {what}: it cannot be "
            f"pickled ({type(error).__name__}: {error}); define it at module level"
        ) from None
    for index, component in enumerate(components):
        try:
            pool.dumps(component)
        except Exception as error:
            raise ConfigurationError(
                f"component {index} ({type(component).__qualname__}) cannot be sent to "
                f"{what}: it cannot be pickled ({type(error).__name__}: {error})"
            ) from None


async def _submit(
    pool: Pool, ready: Any, function: Callable[..., Any], arguments: list[tuple[Any, ...]]
) -> list[object]:
    """Submit the tasks from a worker thread: a process pool's submit writes to its
    manager's wake-up pipe, a blocking write (found on the event loop by blockbuster,
    depending on which tests ran before). Shielded: the handles must come back, they are
    how the tasks are waited for or cancelled (a cancellation is seen right after)."""
    with anyio.CancelScope(shield=True):
        handles = await anyio.to_thread.run_sync(_submit_now, pool, ready, function, arguments)
    return handles


def _submit_now(
    pool: Pool, ready: Any, function: Callable[..., Any], arguments: list[tuple[Any, ...]]
) -> list[object]:
    try:
        return pool.submit(ready, function, arguments)
    except Exception as error:
        raise ExecutorError(
            f"{pool.description} takes no more work ({type(error).__name__}: {error}); "
            "what was stored stays stored: run warm again with a working executor"
        ) from error


async def _outcomes(pool: Pool, handles: list[object]) -> list[tuple[Any, Any]]:
    if pool.fetches:
        return await anyio.to_thread.run_sync(pool.outcomes, handles)
    return pool.outcomes(handles)


def _failed_on(error: BaseException, worker: str) -> BaseException:
    error.add_note(f"(on worker {worker})")
    return error


@dataclass(slots=True)
class _Task:
    items: list[tuple[str, object]]
    handle: object = None
    attempt: int = 0


class RemoteWarm:
    """One ``warm(executor=...)`` whose workers store (see the module docstring)."""

    CHUNK = 256
    """Components keyed and checked per existence query."""

    GATHER_WAIT = 0.25
    """Seconds the first ended task waits for others to end, so that outcomes are
    fetched, and tasks submitted, by groups when tasks are short."""

    def __init__(
        self,
        host: WarmHost,
        spec: StoreSpec,
        pool: Pool,
        attribute_name: str,
        compute: Callable[[Any], Any],
        options: WarmOptions,
        *,
        concurrency: int,
        state: WarmProgress,
        report_progress: Callable[[], None],
        failed: list[tuple[object, BaseException]],
        tallies: Tallies,
    ) -> None:
        self.host, self.spec, self.pool = host, spec, pool
        self.attribute_name, self.compute = attribute_name, compute
        self.options, self.concurrency = options, concurrency
        self.state, self.report_progress = state, report_progress
        self.failed, self.tallies = failed, tallies
        self._inbox = Inbox()
        self._tasks: dict[int, _Task] = {}
        """Submitted tasks whose outcome is not counted yet, by their handle's id."""
        self._ended: list[object] = []
        """Handles of tasks that have ended, their outcomes not fetched yet."""
        self._pending: set[str] = set()
        """Keys of the components waiting, in flight or being checked."""
        self._bad: dict[str, Exception] = {}
        """Keys of bad entries sent to be computed again, and why they were bad."""

    async def run(self, components: Iterable[object]) -> None:
        """Warm `components`: a sequence (checked for pickling before anything is
        submitted, by the caller) or any iterable, read a chunk at a time (each chunk
        checked before it is submitted), so a generated sweep is never all in memory."""
        lazy = not isinstance(components, Sequence)
        iterator = iter(components)
        try:
            waiting: deque[_Task] = deque()
            while chunk := list(itertools.islice(iterator, self.CHUNK)):
                if lazy:
                    check_picklable(self.pool, self.compute, chunk)
                    self.state.total += len(chunk)
                waiting.extend(_Task([item]) for item in await self._missing(chunk))
                while len(waiting) >= self.concurrency:
                    await self._submit_some(waiting)
            while waiting or self._tasks:
                await self._submit_some(waiting)
                if self._tasks:
                    await self._wait(len(self._tasks) - self._group)
                    await self._count_ended(waiting)
        except BaseException:
            self.pool.cancel([task.handle for task in self._tasks.values()])
            raise

    @property
    def _group(self) -> int:
        """Tasks submitted, and outcomes fetched, at a time: half of `concurrency`."""
        return max(1, self.concurrency // 2)

    async def _submit_some(self, waiting: deque[_Task]) -> None:
        """Submit what there is room for, in one call, once `_group` tasks have ended.

        Submitting and fetching by groups costs a Dask scheduler one graph update and one
        gather per group, not per task (measured on a LocalCluster, 200 tasks of 50 ms on
        2 workers: 1.7 s of the caller's CPU one by one, 0.85 s for one ``Client.map``).
        """
        if not waiting:
            return
        await self._wait(self.concurrency - self._group)
        await self._count_ended(waiting)
        room = self.concurrency - len(self._tasks)
        tasks = [waiting.popleft() for _ in range(min(len(waiting), room))]
        arguments = [
            (
                self.spec,
                self.attribute_name,
                self.compute,
                [component for _, component in task.items],
                self.options.lock_timeout,
            )
            for task in tasks
        ]
        handles = await _submit(self.pool, self._inbox.put, store_in_worker, arguments)
        for task, handle in zip(tasks, handles, strict=True):
            task.handle = handle
            self._tasks[id(handle)] = task
        self.state.in_flight += len(tasks)

    async def _wait(self, running: int) -> None:
        """Wait until at most `running` submitted tasks have not ended, or `GATHER_WAIT`
        seconds after one has: a task of an hour is counted (and replaced) at once."""
        if len(self._tasks) - len(self._ended) <= max(running, 0):
            return
        if not self._ended:
            self._ended += await self._inbox.take()
        with anyio.move_on_after(self.GATHER_WAIT):
            while len(self._tasks) - len(self._ended) > max(running, 0):
                self._ended += await self._inbox.take()

    async def _missing(self, chunk: Sequence[object]) -> list[tuple[str, object]]:
        """The chunk's components that are neither stored nor pending (one existence
        check). A repeat of a pending component counts as a duplicate; a repeat of one
        already done is found stored (no list of every key seen: flat memory)."""
        state, items = self.state, []
        await self.host.prepare(chunk)
        for component in chunk:
            try:
                key = self.host.key(component)
            except DataStoreError as error:
                self.failed.append((component, error))
                state.total -= 1
                continue
            if key in self._pending:
                state.total -= 1
                state.duplicates += 1
                continue
            self._pending.add(key)
            items.append((key, component))
        name = self.attribute_name
        pairs = [(key, name) for key, _ in items]
        stored, bad, stale = await self.host.sound_many(
            pairs, self.options.check_stored, [component for _, component in items], self.compute
        )
        state.stale += stale
        for key, component in items:
            if (key, name) not in bad:
                continue
            if self.host.recompute_bad:
                self._bad[key] = bad[key, name]  # its worker finds it bad and recomputes it
            else:
                self._pending.discard(key)
                self._fail(component, bad.pop((key, name)))
        if not self.host.recompute_bad:
            items = [(key, component) for key, component in items if key in self._pending]
        if stored:
            self._pending.difference_update(key for key, _ in stored)
            state.already_stored += len(stored)
            self.host.stats.hits += len(stored)
            self._done(len(stored))
        return [(key, component) for key, component in items if (key, name) not in stored]

    async def _count_ended(self, waiting: deque[_Task]) -> None:
        """Fetch the outcomes of the tasks that have ended (in one go) and count them; a
        task whose worker died goes back to `waiting`, once."""
        handles, self._ended = self._ended, []
        if not handles:
            return
        outcomes = await _outcomes(self.pool, handles)
        for handle, (results, error) in zip(handles, outcomes, strict=True):
            task = self._tasks.pop(id(handle))
            self.state.in_flight -= 1
            if error is None or not (worker_died(error) and task.attempt == 0):
                self._pending.difference_update(key for key, _ in task.items)
            if error is None:
                for (_, component), result in zip(task.items, results, strict=True):
                    self._count(component, result)
            elif worker_died(error) and task.attempt == 0:
                task.attempt += 1
                waiting.append(task)
            elif isinstance(error, DataStoreError):
                raise error  # the workers cannot open or use the store: stop
            else:
                for _, component in task.items:
                    self._fail(component, error)

    def _count(self, component: object, result: TaskResult) -> None:
        self.tallies.add(result)
        if result.error is not None:
            self._fail(component, _failed_on(result.error, result.worker))
            return
        if result.outcome == "computed":
            self.state.computed += 1
            self.host.stats.misses += 1
            if (bad := self._bad.pop(result.key, None)) is not None:
                recomputed_bad(self.host.stats, result.key, self.attribute_name, bad)
        else:
            self.state.already_stored += 1
            self.host.stats.hits += 1
        self._done(1)

    def _fail(self, component: object, error: BaseException) -> None:
        self.state.failed += 1
        self.failed.append((component, error))
        self._done(1)
        if self.options.stop_on_error:
            raise error

    def _done(self, count: int) -> None:
        self.state.done += count
        self.report_progress()


class RemoteCompute:
    """The compute function of a local warm pipeline that runs each call on a pool."""

    def __init__(
        self,
        pool: Pool,
        compute: Callable[[Any], Any],
        state: WarmProgress,
        tallies: Tallies,
    ) -> None:
        self.pool, self.compute, self.state, self.tallies = pool, compute, state, tallies
        self.__wrapped__ = compute  # what provenance fingerprints (`inspect.unwrap`)

    async def __call__(self, component: object) -> Any:
        for attempt in (0, 1):
            result, error = await self._run(component)
            if error is None:
                assert isinstance(result, TaskResult)
                self.tallies.add(result)
                if result.error is not None:
                    raise _failed_on(result.error, result.worker)
                return result.value
            if not (worker_died(error) and attempt == 0):
                raise error
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run(self, component: object) -> tuple[Any, BaseException | None]:
        waiter = Waiter()
        [handle] = await _submit(
            self.pool, lambda _: waiter.wake(), compute_in_worker, [(self.compute, component)]
        )
        self.state.in_flight += 1
        try:
            await waiter.wait()
        finally:
            self.state.in_flight -= 1
        [outcome] = await _outcomes(self.pool, [handle])
        return outcome
