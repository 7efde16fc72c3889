"""The executors `warm` hands computations to, behind one small interface (`Pool`).

Any `concurrent.futures.Executor` (process and thread pools, loky, ``mpi4py.futures``,
Dask's ``Client.get_executor()``), or a ``dask.distributed.Client`` used natively: its
futures are cancelled with ``Client.cancel`` and a task whose worker died is rescheduled
by Dask's scheduler (``distributed.scheduler.allowed-failures`` times) before it reports
``KilledWorker``. Completions arrive on the executors' own threads; an `Inbox` hands them
to the event loop (asyncio or trio) without a thread per task, and their outcomes are
fetched a batch at a time.
"""

from __future__ import annotations

import concurrent.futures
import pickle
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .._runtime.waiting import Waiter
from ..errors import ConfigurationError

__all__ = ["Inbox", "Outcome", "Pool", "Ready", "pool_for", "worker_died"]

Ready = Callable[[object], None]
"""Called with a task's handle once it has ended, from any thread."""

Outcome = tuple[Any, BaseException | None]
"""(result, None) or (None, exception)."""


class Pool(Protocol):
    """What `warm` needs of an executor."""

    description: str

    def submit(
        self, ready: Ready, function: Callable[..., Any], arguments: Sequence[tuple[Any, ...]]
    ) -> list[object]:
        """Start ``function(*args)`` for each tuple (one call to the scheduler where it
        can); `ready` gets each handle when that task ends. Returns the handles."""
        ...

    def outcomes(self, handles: Sequence[object]) -> list[Outcome]:
        """The outcomes of ended tasks (may block: Dask fetches results, in one go)."""
        ...

    @property
    def fetches(self) -> bool:
        """Whether `outcomes` talks to the workers (then call it in a thread)."""
        ...

    def cancel(self, handles: list[object]) -> None:
        """Cancel tasks not yet finished (a task already running may still finish)."""
        ...

    def workers(self) -> int | None:
        """How many tasks it runs at once, when it says."""
        ...

    def dumps(self, value: object) -> bytes | None:
        """`value` as the executor will pickle it (None: it does not pickle)."""
        ...


def _cloudpickle(value: object) -> bytes:
    import cloudpickle

    return bytes(cloudpickle.dumps(value))


def _pickler_of(executor: object) -> Callable[[object], bytes] | None:
    if isinstance(executor, concurrent.futures.ThreadPoolExecutor):
        return None
    module = type(executor).__module__
    if module.startswith(("distributed", "loky", "joblib")):
        return _cloudpickle
    return pickle.dumps


def _outcome(future: concurrent.futures.Future[Any]) -> Outcome:
    if future.cancelled():
        return None, concurrent.futures.CancelledError()
    error = future.exception()
    return (None, error) if error is not None else (future.result(), None)


class FuturesPool:
    """A `concurrent.futures.Executor`."""

    fetches = False

    def __init__(self, executor: concurrent.futures.Executor) -> None:
        self.executor = executor
        self.description = type(executor).__name__
        self._dumps = _pickler_of(executor)

    def submit(
        self, ready: Ready, function: Callable[..., Any], arguments: Sequence[tuple[Any, ...]]
    ) -> list[object]:
        handles: list[object] = []
        for args in arguments:
            future = self.executor.submit(function, *args)
            future.add_done_callback(ready)
            handles.append(future)
        return handles

    def outcomes(self, handles: Sequence[object]) -> list[Outcome]:
        return [_outcome(handle) for handle in handles]  # type: ignore[arg-type]

    def cancel(self, handles: list[object]) -> None:
        for handle in handles:
            assert isinstance(handle, concurrent.futures.Future)
            handle.cancel()

    def workers(self) -> int | None:
        count = getattr(self.executor, "_max_workers", None)
        return count if isinstance(count, int) else None

    def dumps(self, value: object) -> bytes | None:
        return None if self._dumps is None else self._dumps(value)


class DaskPool:
    """A ``dask.distributed.Client``: tasks are not pure (a retry is a new task).

    Submissions go in one ``Client.map`` and results come back in one ``Client.gather``
    per batch: a round trip per task cost the caller (and the scheduler, in a
    `LocalCluster`) 7 ms of CPU per task, 1.5 s for a 200-task sweep on 2 cores.
    """

    fetches = True

    def __init__(self, client: Any) -> None:
        if getattr(client, "asynchronous", False):
            raise ConfigurationError(
                "warm(executor=...) needs a synchronous dask.distributed.Client (the usual "
                "Client(address)); this one was made with asynchronous=True"
            )
        self.client = client
        self.description = f"dask.distributed.Client({client.scheduler.address})"

    def submit(
        self, ready: Ready, function: Callable[..., Any], arguments: Sequence[tuple[Any, ...]]
    ) -> list[object]:
        futures = self.client.map(function, *zip(*arguments, strict=True), pure=False)
        for future in futures:
            future.add_done_callback(ready)  # Dask calls it in its callback thread
        return list(futures)

    def outcomes(self, handles: Sequence[object]) -> list[Outcome]:
        finished = [handle for handle in handles if getattr(handle, "status", "") == "finished"]
        results = dict(zip(map(id, finished), self.client.gather(finished), strict=True))
        outcomes: list[Outcome] = []
        for handle in handles:
            if id(handle) in results:
                outcomes.append((results[id(handle)], None))
            elif getattr(handle, "status", "") == "cancelled":
                outcomes.append((None, concurrent.futures.CancelledError()))
            else:  # erred; or run again since it ended (its worker died with the result)
                try:
                    outcomes.append((handle.result(), None))  # type: ignore[attr-defined]
                except BaseException as error:
                    outcomes.append((None, error))
        return outcomes

    def cancel(self, handles: list[object]) -> None:
        if handles:
            self.client.cancel(handles)

    def workers(self) -> int | None:
        return sum(self.client.nthreads().values()) or None

    def dumps(self, value: object) -> bytes | None:
        return _cloudpickle(value)


def pool_for(executor: object) -> Pool:
    """The `Pool` for a user's executor; `ConfigurationError` for anything else."""
    distributed = sys.modules.get("distributed")
    if distributed is not None and isinstance(executor, distributed.Client):
        return DaskPool(executor)
    if isinstance(executor, concurrent.futures.Executor):
        return FuturesPool(executor)
    raise ConfigurationError(
        "executor must be a concurrent.futures.Executor or a dask.distributed.Client, "
        f"not {type(executor).__name__}"
    )


def worker_died(error: BaseException) -> bool:
    """Whether a task failed because its worker process died (retry it elsewhere).

    A broken process pool says so; Dask has already rescheduled such tasks itself and
    reports ``KilledWorker`` only when they kept killing workers.
    """
    return isinstance(error, concurrent.futures.BrokenExecutor)


class Inbox:
    """Outcomes of tasks, put from any thread and taken in batches on the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Any] = []
        self._waiter: Waiter | None = None

    def put(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.wake()

    async def take(self) -> list[Any]:
        """Everything put so far (waiting for at least one item)."""
        while True:
            with self._lock:
                if self._items:
                    items, self._items = self._items, []
                    return items
                self._waiter = waiter = Waiter()
            await waiter.wait()
