"""A multiprocessing target for test_files_backend (workers import it by name)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from components import SimpleComponent

import adatastore


def replace_with_d(url: str) -> None:
    """Replace a 9 MB record, with a reaper slower than the worker (fault injection)."""
    unlink = os.unlink

    def slow_unlink(*args: Any, **kwargs: Any) -> None:
        if threading.current_thread().name == "adatastore-reaper":
            time.sleep(0.3)
        unlink(*args, **kwargs)

    os.unlink = slow_unlink
    store = adatastore.open_store_sync(url)
    KEPT.append(store)  # never closed: the worker's exit must still wait for the reaper
    store.store(SimpleComponent({"large": True}), "v", b"d" * 9_000_000)


KEPT: list[object] = []
