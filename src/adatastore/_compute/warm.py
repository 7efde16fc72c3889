"""The pipeline behind `AsyncDataStore.warm`: claim, compute, store in groups.

Three stages joined by memory streams, so that no computation waits for storage:

- *claim* (one task) makes the keys a chunk of components at a time, drops repeats,
  registers each entry's in-process flight and takes its cross-process lock without
  waiting, then checks the chunk's claimed entries in one query and hands the missing ones
  to the workers. An entry whose flight or lock is held elsewhere takes the ordinary
  `get_or_compute` path, which waits for it. Computations start after the first chunk,
  not after every key is made.
- *compute* (`concurrency` workers) takes entries from the claim stage's queue (no task
  per entry, no hand-over wait) and runs the computations, shielded: a computation that
  has started completes and is stored even when the warm-up is cancelled.
- *store* (one task) serializes the results and stores everything that has accumulated in
  one `write_many` (one transaction on SQL back-ends: a group commit), then releases
  the locks and wakes whoever waits for those entries.

An entry's lock is held from its claim until it is stored, so other processes warming the
same entries wait for it and then read it instead of computing it again.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..backend import RecordWrite, no_lock
from ..errors import DataStoreError, WorkerStartupError
from ..records import WarmProgress
from ..stats import logger
from .flights import (
    ComputeHost,
    Flight,
    Outcome,
    Reporter,
    get_or_compute,
    in_process,
    is_async,
    recomputed_bad,
    run_compute,
)
from .warm_options import WarmOptions

__all__ = ["WarmHost", "WarmRun"]


class Soundness(NamedTuple):
    """What `WarmHost.sound_many` found."""

    stored: set[tuple[str, str]]
    bad: dict[tuple[str, str], Exception]
    stale: int = 0
    """Stored entries made by other code than the component's (or compute's) now."""


class WarmHost(ComputeHost, Protocol):
    """What a store offers to `warm`, beyond what `get_or_compute` needs."""

    def key(self, component: object) -> str:
        """The key `component` is filed under (after `prepare`)."""
        ...

    async def prepare(self, components: Sequence[object]) -> None:
        """Compute off the loop what keying `components` needs (code fingerprints)."""
        ...

    @property
    def recompute_bad(self) -> bool:
        """Whether bad entries are computed again (else they are failures)."""
        ...

    async def sound_many(
        self,
        pairs: list[tuple[str, str]],
        check: bool,
        components: Sequence[object] = (),
        compute: Callable[..., Any] | None = None,
    ) -> Soundness:
        """Which entries are stored (and, with `check`, readable), the bad ones, and how
        many stored were made by other code than now (warned about once per type)."""
        ...

    async def seal(
        self,
        component: object,
        attribute_name: str,
        value: Any,
        seconds: float | None,
        compute: Callable[..., Any] | None = None,
    ) -> RecordWrite:
        """A computed value, sealed for writing (its provenance names `compute`)."""
        ...

    async def write_many(self, writes: Sequence[RecordWrite]) -> None:
        """Write sealed records in one go, and count them."""
        ...


_WRITERS = 4
"""Groups stored at a time: the files back-end writes in parallel worker threads; SQL
back-ends serialize the writes but prepare the next group meanwhile."""


@dataclass(slots=True)
class _Claim:
    """An entry this run has claimed: its flight is registered and its lock held."""

    key: str
    component: object
    flight: Flight
    lock: contextlib.AbstractAsyncContextManager[bool]
    value: Any = None
    compute_seconds: float | None = None
    bad: Exception | None = None
    """Why the stored entry this claim replaces was bad (None: there was none)."""


class WarmRun:
    """One call of `warm`: claims, computes and stores what its components lack."""

    def __init__(
        self,
        store: WarmHost,
        attribute_name: str,
        compute: Callable[[Any], Any],
        options: WarmOptions,
        *,
        concurrency: int,
        state: WarmProgress,
        report_progress: Reporter,
        failed: list[tuple[object, BaseException]],
    ) -> None:
        self.store = store
        self.attribute_name = attribute_name
        self.compute = compute
        self.options, self.concurrency = options, concurrency
        self._startup_failure: WorkerStartupError | None = None
        self.state = state
        self.report_progress = report_progress
        self.failed = failed
        self._ready: deque[_Claim | tuple[str, object]] = deque()
        """Claimed entries for the workers, and (key, component) of entries held elsewhere."""
        self._claimed_all = False
        self._added = anyio.Event()  # set (and replaced) when entries are queued
        self._wanted = anyio.Event()  # set when the queue runs low

    async def run(self, components: list[object]) -> None:
        """Compute and store the attribute of every component that lacks it."""
        done_send, done_receive = anyio.create_memory_object_stream[_Claim](math.inf)
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._store_results, done_receive)
                with done_send:
                    async with anyio.create_task_group() as group:
                        group.start_soon(self._claim_all, components)
                        for _ in range(min(self.concurrency, len(components))):
                            group.start_soon(self._work, done_send.clone())
        finally:
            with anyio.CancelScope(shield=True):  # cancelled: let go of what was not started
                while self._ready:
                    item = self._ready.popleft()
                    if isinstance(item, _Claim):
                        await self._abandon(item)

    # -- claim ----------------------------------------------------------------------------------

    async def _claim_all(self, components: list[object]) -> None:
        """Claim the entries a chunk at a time (keys, one existence check), queue them.

        It stays about one chunk ahead of the workers: enough that a free worker never
        waits, few enough that it holds few locks that other processes may want.
        """
        seen: set[str] = set()
        batch: list[_Claim] = []
        chunk = max(1, min(self.concurrency, 256))
        try:
            for start in range(0, len(components), chunk):
                while len(self._ready) >= chunk:
                    self._wanted = anyio.Event()
                    await self._wanted.wait()
                await self.store.prepare(components[start : start + chunk])
                for component in components[start : start + chunk]:
                    try:
                        key = self.store.key(component)
                    except DataStoreError as error:
                        self.failed.append((component, error))
                        self.state.total -= 1
                        continue
                    if key in seen:
                        self.state.total -= 1
                        self.state.duplicates += 1
                        continue
                    seen.add(key)
                    claim = await self._claim(key, component)
                    if claim is None:
                        self._ready.append((key, component))
                    else:
                        batch.append(claim)
                await self._drop_stored(batch)
                self._ready.extend(batch)
                batch.clear()
                self._announce()
        except BaseException:
            with anyio.CancelScope(shield=True):
                for claim in batch:
                    await self._abandon(claim)
            raise
        finally:
            self._claimed_all = True
            self._announce()

    def _announce(self) -> None:
        added, self._added = self._added, anyio.Event()
        added.set()

    async def _claim(self, key: str, component: object) -> _Claim | None:
        """Register the flight and take the lock without waiting; None if held elsewhere."""
        store, name = self.store, self.attribute_name
        flight, leader = store.flights.claim(key, name)
        if not leader:
            return None
        lock = store.lock(key, name, 0) if self.options.cross_process else no_lock()
        claim = _Claim(key, component, flight, lock)
        try:
            locked = await lock.__aenter__()
        except BaseException:
            self._drop_flight(claim, Outcome.ABANDONED)
            raise
        if not locked:
            with anyio.CancelScope(shield=True):
                await lock.__aexit__(None, None, None)
            self._drop_flight(claim, Outcome.ABANDONED)  # a waiter retries, maybe as leader
            return None
        return claim

    async def _drop_stored(self, batch: list[_Claim]) -> None:
        """Release the claims whose entry is stored already.

        The check comes after the lock: an entry another process stored before we took
        its lock is seen here, and one it would store later waits for our lock.
        """
        if not batch:
            return
        name = self.attribute_name
        pairs = [(claim.key, name) for claim in batch]
        components = [claim.component for claim in batch]
        stored, bad, stale = await self.store.sound_many(
            pairs, self.options.check_stored, components, self.compute
        )
        self.state.stale += stale
        if bad:
            with anyio.CancelScope(shield=True):
                for claim in [claim for claim in batch if (claim.key, name) in bad]:
                    error = bad[claim.key, name]
                    if self.store.recompute_bad:
                        claim.bad = error  # computed again, and counted when stored
                        continue
                    batch.remove(claim)
                    await self._fail(claim, error)
                    if self.options.stop_on_error:
                        raise error
        if not stored:
            return
        with anyio.CancelScope(shield=True):
            for claim in [claim for claim in batch if (claim.key, name) in stored]:
                batch.remove(claim)
                claim.flight.has_value = False
                self._drop_flight(claim, Outcome.HIT)
                await claim.lock.__aexit__(None, None, None)
                self.store.stats.hits += 1
                self.state.already_stored += 1
                self._one_done()

    # -- compute --------------------------------------------------------------------------------

    def _task(self, component: object) -> Callable[[], Any]:
        task = functools.partial(self.compute, component)
        if self.options.processes and not is_async(self.compute):
            return functools.partial(self._in_process, task)
        return task

    async def _in_process(self, task: Callable[[], Any]) -> Any:
        """`task` in a worker process; once one could not start (the script failed at
        import there), the rest fail with the same error at once instead of each
        starting a process to fail the same way."""
        if self._startup_failure is not None:
            raise self._startup_failure
        try:
            return await in_process(task)
        except WorkerStartupError as error:
            if self._startup_failure is None:
                self._startup_failure = error
                logger.error("warm: %s", error)
            raise

    async def _work(self, done: MemoryObjectSendStream[_Claim]) -> None:
        """One of `concurrency` workers: take queued entries until there are none."""
        with done:
            while True:
                await anyio.lowlevel.checkpoint_if_cancelled()  # computations are shielded
                while not self._ready:
                    if self._claimed_all:
                        return
                    await self._added.wait()
                item = self._ready.popleft()
                if len(self._ready) < self.concurrency:
                    self._wanted.set()
                if isinstance(item, _Claim):
                    await self._compute(item, done)
                else:
                    await self._elsewhere(*item)

    async def _compute(self, claim: _Claim, done: MemoryObjectSendStream[_Claim]) -> None:
        # A computation in a thread or a coroutine cannot be stopped midway: shielded, it
        # runs to its end and is stored. One in a worker process can: a cancelled warm
        # (Ctrl-C) kills its worker (`in_process`) instead of waiting for it.
        killable = self.options.processes and not is_async(self.compute)
        try:
            with anyio.CancelScope(shield=not killable):
                started = time.perf_counter()
                claim.value = await run_compute(
                    self.store,
                    self._task(claim.component),
                    claim.flight,
                    claim.key,
                    self.attribute_name,
                )
                claim.compute_seconds = time.perf_counter() - started
        except Exception as error:
            with anyio.CancelScope(shield=True):
                await self._fail(claim, error)
            if self.options.stop_on_error:
                raise
            return
        try:
            done.send_nowait(claim)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            with anyio.CancelScope(shield=True):  # the store stage has ended (cancelled)
                await self._store_group([claim])

    async def _elsewhere(self, key: str, component: object) -> None:
        """An entry computing in another task or process: wait for it (or compute it)."""
        try:
            _, outcome = await get_or_compute(
                self.store,
                component,
                key,
                self.attribute_name,
                self._task(component),
                cross_process=self.options.cross_process,
                lock_timeout=self.options.lock_timeout,
                value_needed=False,
                known_missing=True,
            )
        except Exception as error:
            self._record_failure(component, error)
            self._one_done()
            if self.options.stop_on_error:
                raise
            return
        if outcome is Outcome.HIT:
            self.state.already_stored += 1
        else:
            self.state.computed += 1
        self._one_done()

    # -- store ----------------------------------------------------------------------------------

    async def _store_results(self, done: MemoryObjectReceiveStream[_Claim]) -> None:
        """Store the results in groups, up to `_WRITERS` groups at a time.

        A group is everything that has arrived by the time a writer is free, so groups
        grow when storage is the bottleneck and stay small (quick) when it is not.
        """
        writers = anyio.CapacityLimiter(_WRITERS)
        pending: list[_Claim] = []  # received, not yet handed to a writer
        async with done, anyio.create_task_group() as group:
            try:
                async for claim in done:
                    pending.append(claim)
                    token = object()
                    await writers.acquire_on_behalf_of(token)
                    with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream):
                        while True:
                            pending.append(done.receive_nowait())
                    claims, pending = pending, []
                    group.start_soon(self._write_group, claims, writers, token)
            finally:
                # Cancelled: store what was computed. Draining and closing happen in one
                # step, so a result sent later finds the stream closed and is stored by
                # its worker instead of being left in the stream.
                with contextlib.suppress(anyio.WouldBlock, anyio.EndOfStream):
                    while True:
                        pending.append(done.receive_nowait())
                done.close()
                if pending:
                    with anyio.CancelScope(shield=True):
                        await self._store_group(pending)

    async def _write_group(
        self, claims: list[_Claim], writers: anyio.CapacityLimiter, token: object
    ) -> None:
        try:
            with anyio.CancelScope(shield=True):
                await self._store_group(claims)
        finally:
            writers.release_on_behalf_of(token)

    async def _store_group(self, claims: list[_Claim]) -> None:
        """Serialize and store `claims` in one `write_many`, then release them."""
        store, name = self.store, self.attribute_name
        prepared: list[RecordWrite] = []
        sealed_claims = []
        for claim in claims:
            try:
                prepared.append(
                    await store.seal(
                        claim.component, name, claim.value, claim.compute_seconds, self.compute
                    )
                )
            except Exception as error:
                await self._fail(claim, error)
                continue
            sealed_claims.append(claim)
        if not prepared:
            return
        try:
            await store.write_many(prepared)
        except Exception as error:
            for claim in sealed_claims:
                await self._fail(claim, error)
            if self.options.stop_on_error:
                raise
            return
        for claim in sealed_claims:
            store.stats.misses += 1
            if claim.bad is not None:
                recomputed_bad(store.stats, claim.key, name, claim.bad)
            self._drop_flight(claim, Outcome.COMPUTED, claim.value)
            await self._unlock(claim)
            self.state.computed += 1
            self._one_done()

    # -- endings --------------------------------------------------------------------------------

    def _drop_flight(
        self, claim: _Claim, outcome: Outcome, value: Any = None, error: Exception | None = None
    ) -> None:
        self.store.flights.finish(
            claim.key, self.attribute_name, claim.flight, outcome, value, error
        )

    async def _unlock(self, claim: _Claim) -> None:
        await claim.lock.__aexit__(None, None, None)  # callers shield it

    async def _fail(self, claim: _Claim, error: Exception) -> None:
        self._drop_flight(claim, Outcome.FAILED, error=error)
        await self._unlock(claim)
        self._record_failure(claim.component, error)
        self._one_done()

    async def _abandon(self, claim: _Claim) -> None:
        self._drop_flight(claim, Outcome.ABANDONED)
        await self._unlock(claim)

    def _record_failure(self, component: object, error: BaseException) -> None:
        self.state.failed += 1
        self.failed.append((component, error))

    def _one_done(self) -> None:
        self.state.done += 1
        self.report_progress()
