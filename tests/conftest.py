"""Fixtures shared by the test suite: event loops, back-ends, blocking-call detection."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from blockbuster import blockbuster_ctx
from helpers import StoreFactory, ThroughBlocking
from s3server import CREDENTIALS, S3Server, shared
from servers import fresh_database

from adatastore import (
    AsyncDataStore,
    AsyncMemoryDataStore,
    AsyncObjectDataStore,
    AsyncShelveDataStore,
    AsyncSQLiteDataStore,
)

# The test S3 server's credentials, as the AWS environment: s3:// URLs opened here and in
# child processes (`helpers.subprocess_env`) authenticate with them, never with a
# developer's own.
os.environ.update(CREDENTIALS)

# Loop-agnostic code runs on both; asyncio-only tests override `anyio_backend`.
LOOPS = ["asyncio", "trio"]


@pytest.fixture
def anyio_backend() -> str:
    """Overridden by the parametrization in `pytest_generate_tests`."""
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_blocking_calls_on_the_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """On asyncio tests, fail any blocking call made on the event loop's thread."""
    if (
        "anyio_backend" not in request.fixturenames
        or request.getfixturevalue("anyio_backend") != "asyncio"
    ):
        yield
        return
    # Only calls made from adatastore's own code are checked, not the tests' set-up.
    with blockbuster_ctx(["adatastore"]):
        yield


# (event loop, back-end) pairs the conformance suite runs on: asyncio-only back-ends
# run on asyncio only (tests/test_event_loops.py checks their error under trio).
BACKENDS = [
    ("asyncio", "memory"),
    ("asyncio", "files"),
    ("asyncio", "sqlite"),
    ("asyncio", "django-sqlite"),
    ("asyncio", "django-postgresql"),
    ("asyncio", "django-mariadb"),
    ("asyncio", "s3"),
    ("asyncio", "sqlite-s3"),
    ("asyncio", "django-postgresql-s3"),
    ("trio", "memory"),
    ("trio", "files"),
    ("trio", "sqlite"),
    ("trio", "s3"),
]


# -- tiers (psycopg's and dask's convention) -------------------------------------------------
#
# ``slow``: database servers, real-process matrices, crash and kill tests, clusters, the
# browser, and single tests of more than a few seconds. ``python -m pytest -n 2 -m "not
# slow"`` is the edit loop (README); the full suite, every tier, is CI's. ``server``:
# needs PostgreSQL or MariaDB (``-m server`` runs just those); ``s3``: a case on the S3
# test server. Single tests are marked ``slow`` where they are defined (several seconds
# in a profiled full run: real processes, the CLI as a command, hypothesis searches).
SERVER_BACKENDS = ("postgresql", "mariadb")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test or case on a database server (its name or any parametrization naming one:
    ``backend_name``, ``backend``, ``server``) is a server test, and slow: each makes a
    database of its own and crosses a socket for every call. A case on the S3 test server
    is slow too: 2.8 s a case on average in a profiled full run (1,263 s of 3,928 s of
    test time), every call an HTTP round trip."""
    for item in items:
        if any(server in item.name for server in SERVER_BACKENDS):
            item.add_marker(pytest.mark.server)
            item.add_marker(pytest.mark.slow)
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "s3" in re.split(r"[-_]", callspec.id):
            item.add_marker(pytest.mark.s3)
            item.add_marker(pytest.mark.slow)


# The conformance suite runs once more per back-end through the blocking API (`api`
# "blocking": every call is the `SyncDataStore` method, in a worker thread).
BLOCKING_TWICE = {"test_conformance"}


@pytest.fixture
def api() -> str:
    """Which API the `make_store` stores answer with: "async", or "blocking"."""
    return "async"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    only_asyncio = metafunc.definition.get_closest_marker("asyncio_only") is not None
    if "backend_name" in metafunc.fixturenames:
        cases = [(*pair, "async") for pair in BACKENDS if pair[0] == "asyncio" or not only_asyncio]
        if metafunc.module.__name__ in BLOCKING_TWICE:
            # the bucket-payload variants' blocking path is SQLite's and Django's own
            names = dict.fromkeys(name for _, name in BACKENDS if not name.endswith("-s3"))
            cases += [("asyncio", name, "blocking") for name in names]
        metafunc.parametrize(
            ("anyio_backend", "backend_name", "api"),
            cases,
            ids=[f"{a}-{b}" if c == "async" else f"blocking-{b}" for a, b, c in cases],
        )
    elif "anyio_backend" in metafunc.fixturenames:
        metafunc.parametrize("anyio_backend", ["asyncio"] if only_asyncio else LOOPS)


@pytest.fixture(scope="session")
def s3() -> S3Server:
    """A real S3-compatible server on 127.0.0.1 (moto's), for the whole session."""
    return shared()


@pytest.fixture
def make_store(
    backend_name: str, api: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StoreFactory]:
    """A factory of async stores of one back-end, each on fresh storage; extra keywords
    go to the constructor. Tests close the stores they make (``async with``), or use the
    `store` fixture. Databases made on servers are dropped afterwards.
    """
    counter = iter(range(1_000_000))
    buckets: list[str] = []

    def bucket() -> str:  # one per test, its stores under prefixes of their own
        if not buckets:
            buckets.append(request.getfixturevalue("s3").new_bucket())
        return buckets[0]

    with contextlib.ExitStack() as cleanup:

        def factory(**options: Any) -> AsyncDataStore:
            number = next(counter)
            if backend_name == "memory":
                return AsyncMemoryDataStore(**options)
            if backend_name == "files":
                return AsyncShelveDataStore(tmp_path / f"store{number}", **options)
            if backend_name == "sqlite":
                return AsyncSQLiteDataStore(tmp_path / f"store{number}.db", **options)
            if backend_name == "sqlite-s3":  # large records in a bucket, rows in SQLite
                endpoint = request.getfixturevalue("s3").endpoint
                return AsyncSQLiteDataStore(
                    tmp_path / f"store{number}.db",
                    payloads=f"s3://{bucket()}/store{number}?endpoint={endpoint}",
                    **options,
                )
            if backend_name == "s3":
                server: S3Server = request.getfixturevalue("s3")
                return AsyncObjectDataStore(
                    bucket(), f"store{number}", **{**server.options(), **options}
                )
            from adatastore import AsyncDjangoORMDataStore

            if backend_name == "django-sqlite":
                database = {"ENGINE": "sqlite3", "NAME": str(tmp_path / f"django{number}.db")}
            else:
                database = cleanup.enter_context(fresh_database(backend_name.split("-")[1]))
            if backend_name.endswith("-s3"):  # records in a bucket, rows in PostgreSQL
                endpoint = request.getfixturevalue("s3").endpoint
                options["payloads"] = f"s3://{bucket()}/store{number}?endpoint={endpoint}"
            return AsyncDjangoORMDataStore(database, **options)

        def made(**options: Any) -> AsyncDataStore:
            store = factory(**options)
            if api == "blocking":
                return cast(AsyncDataStore, ThroughBlocking(store))
            return store

        made.backend = backend_name  # type: ignore[attr-defined]
        yield made


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[AsyncDataStore]:
    async with make_store() as opened:
        yield opened
