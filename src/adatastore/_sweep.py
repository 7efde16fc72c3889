"""`warm` from the facade's side: check the arguments, pick a pipeline, report.

Without an executor the local pipeline (``_warm.WarmRun``) runs computations in tasks,
threads or local processes. With one, the workers store when they can open the store
(``_remote.RemoteWarm``), or their values come back and the local pipeline stores them
(``_remote.RemoteCompute``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ._compute import DEFAULT_LOCK_TIMEOUT, progress_reporter
from ._executors import pool_for
from ._remote import RemoteCompute, RemoteWarm, Tallies, check_picklable
from ._spec import StoreSpec
from ._warm import WarmHost, WarmRun
from .errors import ConfigurationError
from .records import WarmProgress, WarmReport

__all__ = ["warm"]

LOCAL_CONCURRENCY = 8

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


async def warm(
    host: WarmHost,
    spec: StoreSpec | None,
    components: Iterable[object],
    attribute_name: str,
    compute: Callable[[Any], Any],
    *,
    concurrency: int | None = None,
    progress: bool | Callable[[WarmProgress], None] = False,
    processes: bool = False,
    stop_on_error: bool = False,
    cross_process: bool = True,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    executor: object = None,
    store_in_workers: bool | None = None,
    check_stored: bool = True,
) -> WarmReport:
    """See `AsyncDataStore.warm`; `spec` is the store's (None: only this process)."""
    pool = None if executor is None else pool_for(executor)
    if pool is None:
        if store_in_workers:
            raise ConfigurationError("store_in_workers=True needs an executor")
        limit = _concurrency(concurrency, LOCAL_CONCURRENCY)
    else:
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
    report_progress = progress_reporter(progress, state)
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
                concurrency=limit,
                stop_on_error=stop_on_error,
                lock_timeout=lock_timeout,
                check_stored=check_stored,
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
                concurrency=limit,
                processes=processes,
                stop_on_error=stop_on_error,
                cross_process=cross_process,
                lock_timeout=lock_timeout,
                check_stored=check_stored,
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
