"""Helpers for the tests (imported by test modules; fixtures stay in conftest)."""

from __future__ import annotations

import functools
import inspect
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import anyio
import anyio.to_thread
from s3server import CREDENTIALS

from adatastore import AsyncDataStore, SyncDataStore

TESTS_DIR = Path(__file__).parent

StoreFactory = Callable[..., AsyncDataStore]
"""The `make_store` fixture: a new store of the back-end under test; keywords go to its
constructor."""


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `code` (dedented) in a new Python process that can import the test helpers."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(),
        check=False,
    )


def subprocess_env() -> dict[str, str]:
    """Environment for child Python processes: they import the tests' helper modules."""
    env = {**os.environ, **CREDENTIALS}  # the test S3 server's, for s3:// URLs
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    return env


async def eventually(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    """Wait until `condition()` holds (checked every few ms); fail after `seconds`.

    For conditions no event announces (a file appearing, another thread's progress).
    """
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {seconds} s: {condition}")
        await anyio.sleep(0.002)


class ThroughBlocking:
    """An async store's stand-in whose every call goes through the blocking API.

    The conformance suite awaits ``store.retrieve(...)``; with this stand-in each call
    is the `SyncDataStore` method of the same name, run in a worker thread (as a legacy
    script's thread would), so the same tests check the blocking path of every back-end.
    Attributes that are not blocking methods (``stats``, ``path``...) are the async
    store's.
    """

    def __init__(self, async_store: AsyncDataStore) -> None:
        self.async_store = async_store
        self._blocking: SyncDataStore[AsyncDataStore] | None = None

    async def _opened(self) -> SyncDataStore[AsyncDataStore]:
        if self._blocking is None:  # opening blocks: not on the event loop's thread
            self._blocking = await anyio.to_thread.run_sync(SyncDataStore, self.async_store)
        return self._blocking

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or not callable(getattr(SyncDataStore, name, None)):
            return getattr(self.async_store, name)
        if not inspect.iscoroutinefunction(getattr(AsyncDataStore, name)):
            assert self._blocking is not None, "opened by the first awaited call"
            return getattr(self._blocking, name)  # key_of: plain in both APIs

        async def call(*args: Any, **kwargs: Any) -> Any:
            method = getattr(await self._opened(), name)
            return await anyio.to_thread.run_sync(functools.partial(method, *args, **kwargs))

        return call

    async def aclose(self) -> None:
        blocking = await self._opened()
        await anyio.to_thread.run_sync(blocking.close)

    async def __aenter__(self) -> Self:
        await self._opened()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
