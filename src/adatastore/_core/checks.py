"""Checking stored entries without handing back their values: the operations compute and
warm-up use to ask "is it stored, sound and fresh?".

They are operations of the core like `retrieve` (generators yielding requests, run by
`ops.drive` or `ops.drive_blocking`), so a check reads, offloads and decides as a read
does — the same `OFFLOAD_BYTES` threshold, the same expiry rule. (They were a second read
path in the compute host, with its own calls to the back-end.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .._codec import record as _record
from .._codec.sealing import OFFLOAD_BYTES
from ..serializers import Buffer
from .ops import Context
from .policy import BAD_ENTRY_ERRORS
from .requests import CONTAINS_MANY, OFFLOAD, READ_MANY_MAPPED, READ_MAPPED, Operation
from .staleness import code_known, is_expired, learn, warn_if_stale

__all__ = ["CHECK_GROUP", "Found", "check", "sound_many"]

CHECK_GROUP = 16
"""Stored entries a warm-up reads at a time to check them: one round trip (a thread hop
on files: 209 µs an entry one by one, 52 in groups of 16), and at most this many
records in memory on back-ends that do not map."""

Pair = tuple[str, str]
Found = tuple[set[Pair], dict[Pair, Exception], int]
"""What `sound_many` found: the entries stored and sound, the bad ones with their
errors, and how many stored ones other code made."""


def check(context: Context, key: str, attribute_name: str) -> Operation[bool]:
    """Whether the entry is stored and not expired, after reading and decoding it
    (raising what a bad entry raises). It is read mapped where the back-end maps, and its
    digest is checked when it is smaller than `OFFLOAD_BYTES` or not a map
    (`Codec.check`)."""
    data = yield READ_MAPPED, key, attribute_name, "r"
    if data is None:
        return False
    header = yield from _checked_header(context, key, attribute_name, data)
    return not is_expired(header, context.policy.max_age)


def _checked_header(
    context: Context, key: str, attribute_name: str, data: Buffer
) -> Operation[_record.Header]:
    """The record's header, once checked (raises for a bad record); large ones are checked
    off the event loop."""
    codec = context.codec
    if memoryview(data).nbytes < OFFLOAD_BYTES:
        return codec.check(key, attribute_name, data)
    header: _record.Header = yield OFFLOAD, codec.check, key, attribute_name, data
    return header


def sound_many(
    context: Context,
    pairs: list[Pair],
    read_each: bool,
    components: Sequence[object] = (),
    compute: Callable[..., Any] | None = None,
) -> Operation[Found]:
    """Which entries are stored (and, with `read_each`, sound), the bad ones with their
    errors, and how many of the stored were made by other code than `components'` (the
    components of `pairs`, in order) and `compute` now (a `StaleCodeWarning` once per
    type, as a hit of `retrieve` gives). With `read_each` each stored entry is read (mapped
    where the back-end maps; `CHECK_GROUP` at a time: one round trip, bounded memory) and
    decoded; without, existence is enough (and staleness is not looked at)."""
    stored: set[Pair] = yield CONTAINS_MANY, pairs
    bad: dict[Pair, Exception] = {}
    if not read_each or not stored:
        return stored, bad, 0
    judged = dict(zip(pairs, components, strict=False))
    if not context.policy.warn_stale_code:
        judged = {}
    elif not all(code_known(component, compute, False) for component in judged.values()):
        yield OFFLOAD, _learn_each, list(judged.values()), compute
    stale = 0
    max_age = context.policy.max_age
    present = [pair for pair in pairs if pair in stored]
    for start in range(0, len(present), CHECK_GROUP):
        group = present[start : start + CHECK_GROUP]
        records = yield READ_MANY_MAPPED, group, "r"
        for pair, data in zip(group, records, strict=True):
            if data is None:
                stored.discard(pair)  # deleted since
                continue
            try:
                header = yield from _checked_header(context, *pair, data)
            except BAD_ENTRY_ERRORS as error:
                bad[pair] = error
                stored.discard(pair)
                continue
            if is_expired(header, max_age):
                stored.discard(pair)  # expired: computed again
            elif pair in judged and header.provenance_json:
                stale += warn_if_stale(judged[pair], compute, header.provenance_json)
        del records
    return stored, bad, stale


def _learn_each(components: list[object], compute: Callable[..., Any] | None) -> None:
    """The fingerprints a staleness check needs (file I/O: a worker thread's job)."""
    for component in components:
        learn(component, compute, False)
