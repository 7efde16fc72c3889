"""Size, count and age limits (`max_size`, `max_entries`, `max_age`): reads recorded
cheaply, least recently used entries evicted in batches after the writes that cross a
limit.

- **Reads** are noted in memory (a dict of each entry's last read) and written to the
  back-end in batches (`Backend.touch_many`): when `TOUCH_BATCH` distinct entries were
  read, or `TOUCH_SECONDS` after the last batch, and before this process's own trim. Every
  read counts: re-reading a hot entry costs a clock read and a dict store, and its row is
  written once a batch however often it was read. (Counting only the first read in a
  minute ranked an entry read after every store behind all stored since: evicted while
  hot.) The last batch of a process that exits unflushed is lost: those reads count as
  older than they were (eviction order, never correctness); another process's trim sees
  this one's reads once their batch is written.
- **Writes** add their sizes to this process's estimate of the store's usage; no scan
  per write. When the estimate crosses a limit, or this process has written a tenth of
  it since it last looked (other processes write too), `trim` lists the entries once,
  and when over a limit evicts least recently used first (last read, or stored when
  later) down to `TARGET` of the limit; entries older than `max_age` go too. A store
  written by one task is therefore within its limits whenever a write returns; writes
  of other tasks (whose trim found one running: it looks again when done) and of other
  processes are seen at the next look.
- **Planning** is the core's: `Limiter.trim` is an operation (a generator yielding
  requests to list the entries, read their read times and evict a batch), run by the
  same two drivers as a store, inside the write that called for it; nothing here does
  I/O. (It did its own, a third driver, reaching the portal for the blocking path.)
- **Eviction** takes each victim's cross-process lock without waiting: an entry being
  computed or replaced (its lock held) is skipped, never evicted; and it deletes a
  victim only while it is still the record the plan chose (`Backend.delete_listed`,
  compare-and-delete): a value stored in its place since the listing — by a writer that
  takes no lock — is kept. Deletion is atomic per
  back-end (a rename, a row), so a concurrent reader gets the whole value or a miss; a
  mapped array keeps its pages (files are unlinked, not truncated).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from .._runtime.clock import clock
from ..backend import Used
from ..records import Entry
from ..stats import Stats, logger
from .policy import Policy
from .requests import ENTRIES, EVICT, LAST_USED, TOUCH, Operation

__all__ = ["TARGET", "TOUCH_BATCH", "TOUCH_SECONDS", "Limiter", "Plan", "plan"]

TOUCH_BATCH = 1024
"""Distinct entries read before their read times are written."""
TOUCH_SECONDS = 60.0
"""Read times are written at least this often (at the next read)."""
TARGET = 0.9
"""Eviction goes down to this fraction of a limit, so it runs once per tenth, not per write."""
RESYNC = 0.1
"""This process looks at the store's usage again after writing this fraction of a limit."""
EVICT_BATCH = 256
"""Victims locked and deleted at a time."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What a trim found and what it would evict, least recently used first."""

    size: int
    entries: int
    victims: tuple[Entry, ...]


def plan(
    policy: Policy,
    entries: Sequence[Entry],
    used: dict[tuple[str, str], float],
    now: float,
    *,
    target: float = TARGET,
    pinned: frozenset[tuple[str, str]] = frozenset(),
) -> Plan:
    """The entries to evict for `policy`: those older than `max_age`, then least recently
    used (last read, or stored when later) until size and count are at `target` of their
    limits — when a limit is exceeded (at or under it, nothing goes). `pinned` entries
    (found locked) count but are never chosen."""
    size = sum(entry.size for entry in entries)
    count = len(entries)
    victims: list[Entry] = []
    kept: list[tuple[float, Entry]] = []
    for entry in entries:
        stored = entry.stored_at.timestamp()
        if (entry.key, entry.attribute_name) in pinned:
            continue
        if policy.max_age is not None and now - stored > policy.max_age:
            victims.append(entry)
        else:
            last = max(stored, used.get((entry.key, entry.attribute_name), 0.0))
            kept.append((last, entry))
    left_size = size - sum(entry.size for entry in victims)
    left_count = count - len(victims)
    over_size = policy.max_size is not None and left_size > policy.max_size
    over_count = policy.max_entries is not None and left_count > policy.max_entries
    if over_size or over_count:
        size_goal = int(policy.max_size * target) if policy.max_size is not None else None
        count_goal = int(policy.max_entries * target) if policy.max_entries is not None else None
        kept.sort(key=lambda item: (item[0], item[1].key, item[1].attribute_name))
        for _, entry in kept:
            if (size_goal is None or left_size <= size_goal) and (
                count_goal is None or left_count <= count_goal
            ):
                break
            victims.append(entry)
            left_size -= entry.size
            left_count -= 1
    return Plan(size, count, tuple(victims))


class Limiter:
    """One store's limits: its read notes and its estimate of the store's usage."""

    def __init__(self, policy: Policy, stats: Stats) -> None:
        self.policy = policy
        self.stats = stats
        self._pending: dict[tuple[str, str], float] = {}
        self._flushed = clock()
        self._size: int | None = None  # as of the last look; None: not looked yet
        self._count = 0
        self._written = 0
        self._added = 0
        self._looked = 0.0
        self._trimming = threading.Lock()
        self._pid = os.getpid()
        self._again = False

    # -- reads (the hot path) ---------------------------------------------------------------------

    def touch(self, key: str, attribute_name: str) -> bool:
        """Note a read; True when the notes are due to be written (`take`)."""
        now = clock()
        pending = self._pending
        pending[(key, attribute_name)] = now
        return len(pending) >= TOUCH_BATCH or now - self._flushed >= TOUCH_SECONDS

    def take(self) -> list[Used]:
        """The read notes to write, forgotten here."""
        pending, self._pending = self._pending, {}
        self._flushed = clock()
        return [(key, name, when) for (key, name), when in pending.items()]

    def flush(self) -> Operation[None]:
        """Write the read notes not written yet (at close: `Lifecycle` drives it and logs
        a failure rather than raising it — the notes only order eviction)."""
        if self._pending:
            yield TOUCH, self.take()

    # -- writes -----------------------------------------------------------------------------------

    def wrote(self, sizes: Sequence[int]) -> bool:
        """Count written records; True when the store's usage is due a look (`trim`)."""
        self._written += sum(sizes)
        self._added += len(sizes)
        if self._size is None:
            return True
        policy = self.policy
        if policy.max_size is not None and (
            self._size + self._written > policy.max_size or self._written > policy.max_size * RESYNC
        ):
            return True
        if policy.max_entries is not None and (
            self._count + self._added > policy.max_entries
            or self._added > policy.max_entries * RESYNC
        ):
            return True
        return policy.max_age is not None and clock() - self._looked > policy.max_age * RESYNC

    def trim(self) -> Operation[int]:
        """Look at the store's usage and evict what the limits say; return how many went.
        An operation like the core's others (it asks its driver to list, read the read
        times and evict, and plans in between), run inside the write that called for it.
        One trim at a time per store: a caller arriving meanwhile makes the running one
        look again when it is done (its writes may have crossed the limit)."""
        if self._pid != os.getpid():  # a forked child: the parent's lock may be held
            self._pid, self._trimming = os.getpid(), threading.Lock()
        if not self._trimming.acquire(blocking=False):
            self._again = True
            return 0
        try:  # released when the driver fails or is cancelled too (it closes the operation)
            removed = 0
            self._again = True
            while self._again:
                self._again = False
                removed += yield from self._trim_once()
            return removed
        finally:
            self._trimming.release()

    def _trim_once(self) -> Operation[int]:
        if self._pending:
            yield TOUCH, self.take()
        written, added = self._written, self._added
        entries: list[Entry] = yield (ENTRIES,)
        used: dict[tuple[str, str], float] = yield (LAST_USED,)
        now, pinned = clock(), frozenset[tuple[str, str]]()
        removed: list[Entry] = []
        size, count = sum(entry.size for entry in entries), len(entries)
        while True:  # victims found locked are pinned, and others chosen in their place
            found = plan(self.policy, entries, used, now, pinned=pinned)
            if not found.victims:
                break
            gone: list[Entry] = []
            for start in range(0, len(found.victims), EVICT_BATCH):
                gone += yield EVICT, found.victims[start : start + EVICT_BATCH]
            removed += gone
            left = {(entry.key, entry.attribute_name) for entry in gone}
            pinned |= {(e.key, e.attribute_name) for e in found.victims} - left
            entries = [e for e in entries if (e.key, e.attribute_name) not in left]
        freed = sum(entry.size for entry in removed)
        self._size, self._count = size - freed, count - len(removed)
        self._written -= written  # writes during the look are counted next time
        self._added -= added
        self._looked = clock()
        if removed:
            self.stats.evicted += len(removed)
            logger.info("evicted %d entries (%d bytes)", len(removed), freed)
        return len(removed)
