"""Helpers for the tests (imported by test modules; fixtures stay in conftest)."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio


async def eventually(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    """Wait until `condition()` holds (checked every few ms); fail after `seconds`.

    For conditions no event announces (a file appearing, another thread's progress).
    """
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {seconds} s: {condition}")
        await anyio.sleep(0.002)
