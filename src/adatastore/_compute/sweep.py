"""`warm` from the facade's side: check the arguments, pick a pipeline, report.

Without an executor the local pipeline (``_warm.WarmRun``) runs computations in tasks,
threads or local processes. With one, the workers store when they can open the store
(``_remote.RemoteWarm``), or their values come back and the local pipeline stores them
(``_remote.RemoteCompute``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import ConfigurationError
from ..records import WarmProgress, WarmReport
from .executors import pool_for
from .flights import is_async, progress_reporter, refuse_at_worker_import
from .remote import RemoteCompute, RemoteWarm, Tallies, check_picklable
from .spec import StoreSpec
from .warm import WarmHost, WarmRun
from .warm_options import WarmOptions

__all__ = ["warm"]

LOCAL_CONCURRENCY = 8
"""Computations at once for async compute functions, threads (``threads=True``) and
processes, by default. A plain compute function runs one at a time unless threads or
processes are asked for: simulators keep global state (Brian2's clock and scopes), and
12 Brian2 points computed 8 at a time in threads cached wrong spike counts, reported as
computed."""

EXECUTOR_CONCURRENCY = 32
"""Tasks in flight on an executor by default (or 4 per worker, if more): submitted and
fetched by halves, a Dask scheduler handles groups of 16. On a 2-worker LocalCluster,
200 tasks of 50 ms took 1.33-1.39x the ideal at 8 in flight, 1.25-1.31x at 32."""


def _concurrency(requested: int | None, default: int) -> int:
    if requested is None:
        return default
    if requested < 1:
        raise ConfigurationError(f"concurrency must be at least 1, not {requested}")
    return requested


def _local_concurrency(
    compute: Callable[[Any], Any],
    concurrency: int | None,
    threads: int | bool | None,
    processes: bool,
) -> int:
    """How many computations at once without an executor: a plain compute function runs
    in threads only when asked (``threads=N``, or ``threads=True`` with `concurrency`),
    else one at a time; async ones and processes `concurrency` (8) at a time."""
    if threads is not None and not isinstance(threads, bool | int):
        raise ConfigurationError(f"threads must be a number or True, not {threads!r}")
    if is_async(compute) or processes:
        if threads not in (None, False):
            what = "processes=True" if processes else "an async compute function"
            raise ConfigurationError(f"threads= is for plain compute functions, not with {what}")
        return _concurrency(concurrency, LOCAL_CONCURRENCY)
    if threads is None or threads is False:
        if concurrency not in (None, 1):
            raise ConfigurationError(
                f"concurrency={concurrency} with a plain compute function would run it in "
                f"{concurrency} threads at once; say so with threads={concurrency} if it is "
                "thread-safe (simulators such as Brian2 are not), or use processes=True"
            )
        return 1
    if threads is True:
        return _concurrency(concurrency, LOCAL_CONCURRENCY)
    if concurrency is not None and concurrency != threads:
        raise ConfigurationError(f"threads={threads} and concurrency={concurrency} disagree")
    return _concurrency(threads, LOCAL_CONCURRENCY)


async def warm(
    host: WarmHost,
    spec: StoreSpec | None,
    components: Iterable[object],
    attribute_name: str,
    compute: Callable[[Any], Any],
    options: WarmOptions,
) -> WarmReport:
    """See `AsyncDataStore.warm`; `spec` is the store's (None: only this process)."""
    concurrency, threads, processes = options.concurrency, options.threads, options.processes
    executor, store_in_workers = options.executor, options.store_in_workers
    refuse_at_worker_import()
    pool = None if executor is None else pool_for(executor)
    if pool is None:
        if store_in_workers:
            raise ConfigurationError("store_in_workers=True needs an executor")
        limit = _local_concurrency(compute, concurrency, threads, processes)
    else:
        if threads not in (None, False):
            raise ConfigurationError(
                "threads= runs computations in local threads; with an executor, the "
                "executor decides where they run: pass one or the other"
            )
        if processes:
            raise ConfigurationError(
                "processes=True runs computations in local processes; with an executor, "
                "the executor decides where they run: pass one or the other"
            )
        if store_in_workers and spec is None:
            raise ConfigurationError(
                "store_in_workers=True, but only this process can reach the store (a "
                "memory store): its workers cannot open it"
            )
        limit = _concurrency(concurrency, max(EXECUTOR_CONCURRENCY, 4 * (pool.workers() or 0)))
    failed: list[tuple[object, BaseException]] = []
    remote = pool is not None and spec is not None and store_in_workers is not False
    if not (remote or isinstance(components, list)):
        components = list(components)  # the local pipeline takes a list
    if pool is not None and isinstance(components, Sequence):
        check_picklable(pool, compute, components)  # all, before anything is submitted
    state = WarmProgress(total=len(components) if isinstance(components, Sequence) else 0)
    report_progress = progress_reporter(options.progress, state)
    tallies = Tallies()
    try:
        if remote:
            assert pool is not None
            assert spec is not None
            run_remote = RemoteWarm(
                host,
                spec,
                pool,
                attribute_name,
                compute,
                options,
                concurrency=limit,
                state=state,
                report_progress=report_progress,
                failed=failed,
                tallies=tallies,
            )
            await run_remote.run(components)
        else:
            if pool is not None:
                compute = RemoteCompute(pool, compute, state, tallies)
            run = WarmRun(
                host,
                attribute_name,
                compute,
                options,
                concurrency=limit,
                state=state,
                report_progress=report_progress,
                failed=failed,
            )
            try:
                assert isinstance(components, list)
                await run.run(components)
            except BaseExceptionGroup as group_error:
                first = group_error.exceptions[0]
                while isinstance(first, BaseExceptionGroup):
                    first = first.exceptions[0]
                if first.__cause__ is not None:  # its own cause (a worker's error) kept
                    raise first from first.__cause__
                raise first from group_error
    finally:
        report_progress(close=True)
    return WarmReport(
        computed=state.computed,
        already_stored=state.already_stored,
        duplicates=state.duplicates,
        failed=tuple(failed),
        workers=tallies.report(),
        stale=state.stale,
    )
