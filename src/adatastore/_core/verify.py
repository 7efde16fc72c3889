"""`verify`: every record's checksum and signature checked, nothing deserialized.

Repair removes only what is *proved* damaged: a record that fails its checksum or
signature, or something planted where a record or directory of the store belongs. What
merely cannot be reached is never judged: a `StorageError` on a read (a mount that is
down, a bucket that does not answer) lists the entry as unreadable and keeps it, and a
`ConfigurationError` (a store opened without the data_root_dir or bucket its records are
in, or with the wrong one) stops the whole run before anything is removed — every entry
would look damaged, and ``--repair`` would have deleted the index.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import anyio.to_thread

from .._codec.sealing import OFFLOAD_BYTES, Codec
from ..backend import Backend
from ..errors import CorruptEntryError, IntegrityError, StorageError
from ..records import DamagedEntry, Entry, VerifyReport

__all__ = ["verify"]


async def verify(
    backend: Backend, codec: Codec, repair: bool, progress: Callable[[int, int], None] | None
) -> VerifyReport:
    """See `AsyncDataStore.verify`."""
    damaged: list[tuple[DamagedEntry, Entry]] = []
    unreadable: list[DamagedEntry] = []
    checked = 0
    entries = await backend.entries()
    for done, entry in enumerate(entries, 1):
        if progress is not None:
            progress(done, len(entries))
        try:
            data = await backend.read(entry.key, entry.attribute_name)
        except (CorruptEntryError, IntegrityError) as error:
            damaged.append((DamagedEntry(entry.key, entry.attribute_name, error.reason), entry))
            continue
        except StorageError as error:
            unreadable.append(DamagedEntry(entry.key, entry.attribute_name, str(error)))
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
            damaged.append((DamagedEntry(entry.key, entry.attribute_name, error.reason), entry))
    planted = await backend.planted()
    removed = 0
    if repair:
        # only records still as they were read: one stored again since is not damaged
        removed += len(await backend.delete_listed([entry for _, entry in damaged]))
        for item in planted:
            removed += await backend.remove_planted(item)
    found = tuple(item for item, _ in damaged) + tuple(planted)
    return VerifyReport(checked, found, removed, tuple(unreadable))
