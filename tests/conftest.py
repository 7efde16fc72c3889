"""Fixtures shared by the test suite: event loops, back-ends, blocking-call detection."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from blockbuster import blockbuster_ctx

from adatastore import AsyncDataStore, AsyncMemoryDataStore, AsyncShelveDataStore

TESTS_DIR = Path(__file__).parent

# Loop-agnostic code runs on both; asyncio-only tests override `anyio_backend`.
LOOPS = ["asyncio", "trio"]


@pytest.fixture(params=LOOPS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


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


StoreFactory = Callable[..., AsyncDataStore]

BACKENDS = ["memory", "files"]


@pytest.fixture(params=BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory of async stores of one back-end; extra keywords go to the constructor."""
    counter = iter(range(1_000_000))

    def factory(**options: Any) -> AsyncDataStore:
        if request.param == "memory":
            return AsyncMemoryDataStore(**options)
        return AsyncShelveDataStore(tmp_path / f"store{next(counter)}", **options)

    factory.backend = request.param  # type: ignore[attr-defined]
    return factory


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[AsyncDataStore]:
    async with make_store() as opened:
        yield opened


def subprocess_env() -> dict[str, str]:
    """Environment for child Python processes: they import the tests' helper modules."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    return env
