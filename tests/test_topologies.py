"""Every back-end under every way users run it: fork, pools, spawn, forkserver, threads and
several event loops; each cell in real processes with a hard time limit.

`topology_driver.py` runs the cells of one back-end in one process (sharing start-up
costs) and prints a line per topology; a topology that hangs is killed and reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import s3server
from helpers import TESTS_DIR, run_python, subprocess_env
from servers import fresh_database

BACKENDS = [
    "memory",
    "files",
    "sqlite",
    "django-sqlite",
    "django-postgresql",
    "django-mariadb",
    "s3",
]
TOPOLOGIES = [
    "fork-used",
    "fork-constructed",
    "fork-async",
    "pool",
    "spawn",
    "forkserver",
    "threads",
    "loops",
    "rerun",
]
# The async topologies need an async store usable from any asyncio loop: every back-end.


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """backend -> topology -> failure (None: passed); the drivers run lazily, once each."""
    results: dict[str, Any] = {}
    with _Databases() as databases:

        def get(backend: str) -> dict[str, Any]:
            if backend not in results:
                url = _url(backend, tmp_path_factory.mktemp(backend), databases)
                results[backend] = _drive(url)
            found: dict[str, Any] = results[backend]
            return found

        yield {"get": get}


class _Databases:
    def __init__(self) -> None:
        self.stack: list[Any] = []

    def __enter__(self) -> _Databases:
        return self

    def database(self, server: str) -> dict[str, Any]:
        manager = fresh_database(server)
        settings = manager.__enter__()
        self.stack.append(manager)
        return settings

    def __exit__(self, *exc: object) -> None:
        for manager in reversed(self.stack):
            manager.__exit__(None, None, None)


def _url(backend: str, directory: Path, databases: _Databases) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "files":
        return f"file://{directory}/store"
    if backend == "sqlite":
        return f"sqlite:///{directory}/store.db"
    if backend == "django-sqlite":
        return f"django+sqlite:///{directory}/django.db"
    if backend == "s3":
        return s3server.url()
    server = backend.split("-")[1]
    settings = databases.database(server)
    scheme = "postgresql" if server == "postgresql" else "mysql"
    return (
        f"django+{scheme}://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/"
        f"{settings['NAME']}"
    )


def _drive(url: str) -> dict[str, Any]:
    driver = TESTS_DIR / "topology_driver.py"
    process = subprocess.run(
        [sys.executable, str(driver), url, *TOPOLOGIES],
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(),
        check=False,
    )
    found: dict[str, Any] = {}
    for line in process.stdout.splitlines():
        if line.startswith("{"):
            item = json.loads(line)
            found[item["topology"]] = item
    found["_stderr"] = process.stderr[-3000:]
    return found


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize(
    "backend",
    # one test process runs all of a back-end's cells (``--dist loadgroup``): the driver
    # of each back-end then runs once, not once in each test process (s3: 2 x 20 s)
    [pytest.param(name, marks=pytest.mark.xdist_group(f"topologies-{name}")) for name in BACKENDS],
)
def test_every_operation_works(outcomes: dict[str, Any], backend: str, topology: str) -> None:
    """store, retrieve, retrieve_many, contains, get_or_compute, warm, list_contents and
    delete work in the topology, and the parent still works and sees the results."""
    results = outcomes["get"](backend)
    assert topology in results, f"{topology} did not run: {results['_stderr']}"
    failure = results[topology]["failure"]
    assert failure is None, failure


# -- fork while other threads use the store ----------------------------------------------------

FORK_UNDER_LOAD = """
import os, sys, threading, time
sys.path.insert(0, {tests!r})
import adatastore
from components import PlainComponent
import topology_driver
from topology_driver import in_fork
topology_driver.LIMIT = 15.0

url = sys.argv[1]
if "django" in url:
    import adatastore.backends.django.store
store = adatastore.open_store_sync(url)
for n in range(20):
    store.store(PlainComponent({{"n": n}}), "value", "x" * 5000 * (n % 3))
stop = threading.Event()

def read():
    while not stop.is_set():
        for n in range(20):
            store.retrieve(PlainComponent({{"n": n}}), "value")

def write():
    n = 100
    while not stop.is_set():
        store.store(PlainComponent({{"n": n % 120}}), "value", "y" * 7000 * (n % 3))
        n += 1

threads = [threading.Thread(target=read) for _ in range(6)]
threads += [threading.Thread(target=write) for _ in range(2)]
for thread in threads:
    thread.start()

def child():
    assert store.retrieve(PlainComponent({{"n": 1}}), "value") is not None
    store.store(PlainComponent({{"child": os.getpid()}}), "value", 1)
    assert store.retrieve(PlainComponent({{"child": os.getpid()}}), "value") == 1

failures = []
for _ in range(int(sys.argv[2])):
    failure = in_fork(child)
    if failure is not None:
        failures.append(failure)
stop.set()
for thread in threads:
    thread.join()
store.close()
print("FAILURES", len(failures))
for failure in failures[:2]:
    print(failure)
"""


@pytest.mark.parametrize("backend", ["sqlite", "files", "django-sqlite"])
@pytest.mark.slow
def test_fork_while_other_threads_use_the_store(tmp_path: Path, backend: str) -> None:
    """Forked 30 times while 6 reader and 2 writer threads use the store: every child's
    retrieve and store finish (a lock or SQLite state held by a parent thread at the fork
    must not hang the child)."""
    url = _url(backend, tmp_path, _Databases())
    code = FORK_UNDER_LOAD.format(tests=str(TESTS_DIR))
    result = run_python(code, url, "30", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FAILURES 0" in result.stdout, result.stdout[-3000:]


# -- the interpreter exits promptly ------------------------------------------------------------

UNCLOSED = """
import asyncio, sys, warnings
warnings.simplefilter("default")
import adatastore
from components import SimpleComponent

async def main():
    store = await adatastore.open_store(sys.argv[1])
    await store.store(SimpleComponent({"a": 1}), "x", 1)
    assert await store.retrieve(SimpleComponent({"a": 1}), "x") == 1
    # not closed, and no reference kept: the README's usage minus the `async with`

asyncio.run(main())
print("done")
"""


@pytest.mark.parametrize("backend", ["sqlite", "files", "django-sqlite"])
def test_a_store_never_closed_does_not_hang_the_exit(tmp_path: Path, backend: str) -> None:
    url = _url(backend, tmp_path, _Databases())
    result = run_python(UNCLOSED, url, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "done" in result.stdout
    if backend == "sqlite":
        assert "ResourceWarning" in result.stderr, "a store dropped unclosed is reported"


def test_exit_with_a_blocking_store_in_use_by_threads(tmp_path: Path) -> None:
    """Daemon threads still using a store at exit do not hold the interpreter."""
    code = """
    import sys, threading
    import adatastore
    from components import PlainComponent
    store = adatastore.SQLiteDataStore(sys.argv[1])
    def hammer():
        n = 0
        while True:
            store.store(PlainComponent({"n": n % 50}), "v", n)
            n += 1
    for _ in range(3):
        threading.Thread(target=hammer, daemon=True).start()
    store.retrieve(PlainComponent({"n": 0}), "v")
    print("exiting")
    """
    result = run_python(code, str(tmp_path / "s.db"), timeout=60)
    assert "exiting" in result.stdout, result.stderr[-3000:]


def test_spawned_workers_use_the_same_keys_as_the_parent() -> None:
    """full_type of a class in __mp_main__ is the same as in __main__."""
    from adatastore.component import full_type

    class Local:
        pass

    Local.__module__ = "__mp_main__"
    assert full_type(Local()).startswith("__main__.")
    assert os.environ.get("PYTEST_CURRENT_TEST")  # runs under pytest


@pytest.mark.parametrize("backend", ["memory", "files", "sqlite", "django-sqlite"])
def test_callers_on_several_event_loops_share_one_computation(tmp_path: Path, backend: str) -> None:
    """Three threads, each running its own asyncio loop, ask one async store for the same
    missing entry: one computes, the two others wait for it on their own loops."""
    import asyncio
    import threading

    from components import SimpleComponent

    import adatastore

    url = _url(backend, tmp_path, _Databases())
    store = asyncio.run(adatastore.open_store(url))  # opened on a loop that then ends
    c = SimpleComponent({"shared": 1})
    release = threading.Event()
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        assert release.wait(30)
        return "value"

    results: list[object] = []

    def caller() -> None:
        results.append(asyncio.run(store.get_or_compute(c, "x", compute)))

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    key = store.key_of(c)
    deadline = time.monotonic() + 30
    while True:  # until the leader computes and the two others wait for its flight
        flight = store._parts.host.flights.get((key, "x"))
        if flight is not None and calls and len(flight._waiters) == 2:
            break
        assert time.monotonic() < deadline, "the callers never met"
        threading.Event().wait(0.005)
    release.set()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a caller hangs"
    assert results == ["value"] * 3
    assert calls == [1]
    asyncio.run(store.aclose())
