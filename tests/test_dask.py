"""``warm(executor=...)`` on a real Dask cluster: a `LocalCluster` of two worker processes
(TCP on 127.0.0.1), started once for this module.

The workers open the store themselves (SQLite on this disk; Django on PostgreSQL with a
``data_root_dir``) and store what they compute; the log of `Logged` (with pids) shows
that each component is computed once, also with two callers warming overlapping sweeps,
a worker SIGKILLed mid-task and a caller SIGKILLed mid-sweep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import s3server
from cluster_tasks import Logged, done_counts, points, read_log
from components import PlainComponent
from distributed import Client, LocalCluster
from helpers import subprocess_env
from servers import fresh_database

from adatastore import (
    ConfigurationError,
    SQLiteDataStore,
    SyncDataStore,
    open_store,
    open_store_sync,
)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            protocol="tcp",
            # None still serves HTTP on 8787: a second cluster (the other test process)
            # warns, and warnings are errors here
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


@pytest.fixture(params=["sqlite", "django-postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SyncDataStore[Any]]:
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            made: Any = SQLiteDataStore(tmp_path / "cache.db")
        else:
            from adatastore import DjangoORMDataStore

            database = stack.enter_context(fresh_database("postgresql"))
            made = DjangoORMDataStore(database, tmp_path / "payloads")
        yield stack.enter_context(made)


@pytest.fixture(params=["sqlite", "django-postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new store, made (workers open stores, they never make them)."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'shared.db'}"
        else:
            database = stack.enter_context(fresh_database("postgresql"))
            url = (
                f"django+postgresql://{database['USER']}@{database['HOST']}:{database['PORT']}"
                f"/{database['NAME']}?data_root_dir={tmp_path / 'payloads'}"
            )
        with open_store_sync(url):
            pass
        yield url


def worker_pids(client: Any) -> set[int]:
    return set(client.run(os.getpid).values())


@pytest.mark.slow
def test_a_200_point_sweep_is_computed_once_on_the_workers(
    client: Any, store: SyncDataStore[Any], tmp_path: Path
) -> None:
    log = str(tmp_path / "log")
    sweep = points(200)
    report = store.warm(sweep, "square", Logged(log), executor=client)
    assert report.ok, report.failed
    assert (report.computed, report.already_stored) == (200, 0)
    assert done_counts(log) == {n: 1 for n in range(200)}
    pids = {int(worker.rsplit(":", 1)[1]) for _, _, worker in read_log(log)}
    assert pids <= worker_pids(client)
    assert os.getpid() not in pids
    assert {int(name.rsplit(":", 1)[1]) for name in report.workers} == pids
    assert store.retrieve_many([(c, "square") for c in sweep]) == [n * n for n in range(200)]

    started = time.perf_counter()
    again = store.warm(sweep, "square", Logged(log), executor=client)
    assert (again.computed, again.already_stored, dict(again.workers)) == (0, 200, {})
    assert time.perf_counter() - started < 30  # nothing submitted (a sanity bound)


def test_the_client_s_own_executor_works_too(client: Any, tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    with SQLiteDataStore(tmp_path / "c.db") as store:
        report = store.warm(points(20), "square", Logged(log), executor=client.get_executor())
        assert report.computed == 20
        assert done_counts(log) == {n: 1 for n in range(20)}


DRIVER = """
    import sys
    from cluster_tasks import Logged, points
    from distributed import Client
    from adatastore import open_store_sync

    address, url, log, start, count = sys.argv[1:6]
    with Client(address) as client, open_store_sync(url) as store:
        report = store.warm(
            points(int(count), int(start)), "square", Logged(log, cpu_seconds=0.005),
            executor=client,
        )
        print(report.computed, report.already_stored, len(report.failed))
"""


def start_driver(client: Any, url: str, log: str, start: int, count: int) -> Any:
    address = client.scheduler.address
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(DRIVER), address, url, log, str(start), str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )


@pytest.mark.slow
def test_two_callers_warming_overlapping_sweeps_compute_each_point_once(
    client: Any, store_url: str, tmp_path: Path
) -> None:
    log, url = str(tmp_path / "log"), store_url
    first = start_driver(client, url, log, 0, 150)
    second = start_driver(client, url, log, 50, 150)
    outputs = [process.communicate(timeout=300) for process in (first, second)]
    assert [process.returncode for process in (first, second)] == [0, 0], outputs
    computed = [tuple(map(int, out.split())) for out, _ in outputs]
    assert all(failed == 0 for _, _, failed in computed)
    assert sum(c for c, _, _ in computed) == 200  # between them, every point once
    assert all(c + stored == 150 for c, stored, _ in computed)
    assert done_counts(log) == {n: 1 for n in range(200)}


def test_a_worker_killed_mid_task_leaves_the_sweep_complete_and_the_point_stored_once(
    client: Any, store: SyncDataStore[Any], tmp_path: Path
) -> None:
    log = str(tmp_path / "log")
    # the worker an earlier case killed may still be restarting: both must be up first
    client.wait_for_workers(2, timeout=120)
    before = worker_pids(client)
    report = store.warm(points(40), "square", Logged(log, die_once=17), executor=client)
    assert report.ok, report.failed
    # Dask also reruns the tasks the dead worker had finished (their results died with
    # it): those find their entry stored, so they count as already stored, not computed.
    assert report.computed + report.already_stored == 40
    events = read_log(log)
    starts_of_17 = [worker for event, n, worker in events if (event, n) == ("start", 17)]
    assert len(starts_of_17) == 2  # the killed attempt and the rescheduled one
    died = int(starts_of_17[0].rsplit(":", 1)[1])
    assert died in before
    assert died not in worker_pids(client)
    assert done_counts(log) == {n: 1 for n in range(40)}
    assert store.retrieve(PlainComponent({"n": 17}), "square") == 289
    assert len(store.list_contents()) == 40


@pytest.mark.slow
def test_a_caller_killed_mid_sweep_is_resumed_by_a_rerun(
    client: Any, store_url: str, tmp_path: Path
) -> None:
    log, url = str(tmp_path / "log"), store_url
    driver = start_driver(client, url, log, 0, 200)
    deadline = time.monotonic() + 120
    while len(done_counts(log)) < 40:  # a third or so of the way: kill it
        assert driver.poll() is None, driver.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    driver.send_signal(signal.SIGKILL)
    driver.communicate()
    rerun = start_driver(client, url, log, 0, 200)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    computed, already_stored, failed = map(int, out.split())
    assert failed == 0
    assert computed + already_stored == 200
    assert already_stored >= 40  # what the killed run stored was not computed again
    assert done_counts(log) == {n: 1 for n in range(200)}
    with open_store_sync(url) as store:
        assert len(store.list_contents()) == 200


EXAMPLE = Path(__file__).parent.parent / "examples" / "cluster_dask.py"


@pytest.mark.parametrize("store", ["sqlite", "s3", "postgresql-with-s3-payloads"])
@pytest.mark.slow
def test_the_docs_example_computes_the_sweep_once_then_nothing(
    client: Any, tmp_path: Path, store: str
) -> None:
    """examples/cluster_dask.py, shown in docs/cluster.rst: on a LocalCluster of its own,
    then on this module's cluster (by the scheduler's address); on SQLite, on a bucket, and
    on PostgreSQL with the records in a bucket (the workers reach the bucket with the AWS
    environment they inherited)."""
    with contextlib.ExitStack() as stack:
        if store == "sqlite":
            url = f"sqlite:///{tmp_path}/sweep.db"
        elif store == "s3":
            url = s3server.url("sweep")
        else:
            database = stack.enter_context(fresh_database("postgresql"))
            payloads = quote(s3server.url("records"), safe="")
            url = (
                f"django+postgresql://postgres@127.0.0.1:5432/{database['NAME']}"
                f"?payloads={payloads}"
            )
        _run_the_example_twice(client, url)


def _run_the_example_twice(client: Any, url: str) -> None:
    runs = []
    for address in ([], [client.scheduler.address]):
        result = subprocess.run(
            [sys.executable, str(EXAMPLE), url, *address],
            capture_output=True,
            text=True,
            timeout=300,
            env=subprocess_env(),
            check=False,
        )
        assert result.returncode == 0, result.stderr
        runs.append(result.stdout.splitlines())
    assert runs[0][0] == "computed=40 already_stored=0 failed=0 workers=2"
    assert runs[1][0] == "computed=0 already_stored=40 failed=0 workers=0"
    assert runs[0][1] == runs[1][1]  # the same trace, the second time from the store


@pytest.mark.anyio
@pytest.mark.asyncio_only
async def test_an_asynchronous_client_is_refused_clearly(client: Any, tmp_path: Path) -> None:
    async with (
        Client(client.scheduler.address, asynchronous=True) as asynchronous,  # type: ignore[no-untyped-call]
        await open_store(tmp_path / "c.db") as store,
    ):
        with pytest.raises(ConfigurationError, match="needs a synchronous"):
            await store.warm(
                points(3), "square", Logged(str(tmp_path / "log")), executor=asynchronous
            )
        assert await store.list_contents() == []
