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

from collections.abc import Callable

from .._codec.sealing import OFFLOAD_BYTES, Codec
from ..errors import CorruptEntryError, IntegrityError
from ..records import DamagedEntry, Entry, VerifyReport
from ..serializers import Buffer
from .requests import (
    DELETE_LISTED,
    ENTRIES,
    OFFLOAD,
    PLANTED,
    READ_OR_ERROR,
    REMOVE_PLANTED,
    Operation,
)

__all__ = ["verify"]


def verify(
    codec: Codec, repair: bool, progress: Callable[[int, int], None] | None
) -> Operation[VerifyReport]:
    """See `AsyncDataStore.verify` (an operation of the core: `ops.drive` runs it)."""
    damaged: list[tuple[DamagedEntry, Entry]] = []
    unreadable: list[DamagedEntry] = []
    checked = 0
    entries: list[Entry] = yield (ENTRIES,)
    for done, entry in enumerate(entries, 1):
        if progress is not None:
            progress(done, len(entries))
        data = yield READ_OR_ERROR, entry.key, entry.attribute_name
        if isinstance(data, (CorruptEntryError, IntegrityError)):
            damaged.append((DamagedEntry(entry.key, entry.attribute_name, data.reason), entry))
            continue
        if isinstance(data, Exception):  # a StorageError: unreachable, never judged
            unreadable.append(DamagedEntry(entry.key, entry.attribute_name, str(data)))
            continue
        if data is None:
            continue  # deleted meanwhile
        checked += 1
        if memoryview(data).nbytes >= OFFLOAD_BYTES:
            error = yield OFFLOAD, _damage, codec, entry.key, entry.attribute_name, data
        else:
            error = _damage(codec, entry.key, entry.attribute_name, data)
        if error is not None:
            damaged.append((DamagedEntry(entry.key, entry.attribute_name, error.reason), entry))
    planted = yield (PLANTED,)
    removed = 0
    if repair:
        # only records still as they were read: one stored again since is not damaged
        removed += len((yield DELETE_LISTED, [entry for _, entry in damaged]))
        for item in planted:
            removed += yield REMOVE_PLANTED, item
    found = tuple(item for item, _ in damaged) + tuple(planted)
    return VerifyReport(checked, found, removed, tuple(unreadable))


def _damage(
    codec: Codec, key: str, attribute_name: str, data: Buffer
) -> CorruptEntryError | IntegrityError | None:
    """What is wrong with the record (its checksum, signature or format), or None; handed
    back, not raised, so the walk goes on (in a worker thread for a large record)."""
    try:
        codec.open(key, attribute_name, data, True)
    except (CorruptEntryError, IntegrityError) as error:
        return error
    return None
