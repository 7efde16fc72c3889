"""`verify`: every record's checksum and signature checked, nothing deserialized."""

from __future__ import annotations

import functools
from collections.abc import Callable

import anyio.to_thread

from ._codec import OFFLOAD_BYTES, Codec
from .backend import Backend
from .errors import CorruptEntryError, DataStoreError, IntegrityError
from .records import DamagedEntry, VerifyReport

__all__ = ["verify"]


async def verify(
    backend: Backend, codec: Codec, repair: bool, progress: Callable[[int, int], None] | None
) -> VerifyReport:
    """See `AsyncDataStore.verify`."""
    damaged: list[DamagedEntry] = []
    checked = 0
    entries = await backend.entries()
    for done, entry in enumerate(entries, 1):
        if progress is not None:
            progress(done, len(entries))
        try:
            data = await backend.read(entry.key, entry.attribute_name)
        except DataStoreError as error:
            damaged.append(DamagedEntry(entry.key, entry.attribute_name, str(error)))
            continue
        if data is None:
            continue  # deleted meanwhile
        checked += 1
        check = functools.partial(codec.open, entry.key, entry.attribute_name, data, True)
        try:
            if memoryview(data).nbytes >= OFFLOAD_BYTES:
                await anyio.to_thread.run_sync(check)
            else:
                check()
        except (CorruptEntryError, IntegrityError) as error:
            damaged.append(DamagedEntry(entry.key, entry.attribute_name, error.reason))
    planted = await backend.planted()
    removed = 0
    if repair:
        for item in damaged:
            removed += await backend.delete(item.key, item.attribute_name)
        for item in planted:
            removed += await backend.remove_planted(item)
    damaged += planted
    return VerifyReport(checked, tuple(damaged), removed)
