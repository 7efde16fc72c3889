"""A multiprocessing target for test_files_backend (workers import it by name)."""

from __future__ import annotations

from components import SimpleComponent

import adatastore


def replace_with_d(url: str) -> None:
    """Replace a 9 MB record, leaving the store unclosed as the worker exits."""
    store = adatastore.open_store_sync(url)
    KEPT.append(store)  # never closed
    store.store(SimpleComponent({"large": True}), "v", b"d" * 9_000_000)


KEPT: list[object] = []
