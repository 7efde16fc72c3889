"""Per-store counters: hits, misses, stores, computations, bytes and time.

Every store object has a `Stats` as ``store.stats``; ``store.stats.reset()`` zeroes it.
Each event is also logged at DEBUG level on the ``adatastore`` logger.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

__all__ = ["Stats", "logger"]

logger = logging.getLogger("adatastore")


@dataclass
class Stats:
    """What one store object did since it was made (or since `reset`)."""

    hits: int = 0
    """Retrieves that found a value."""
    misses: int = 0
    """Retrieves that found nothing."""
    stores: int = 0
    """Values stored."""
    computes: int = 0
    """Computations run by `get_or_compute` / `warm` (successful or not)."""
    shared: int = 0
    """Callers served by a computation another caller of this process ran (single-flight)."""
    failures: int = 0
    """Computations that raised."""
    recomputed_bad: int = 0
    """Entries `get_or_compute` / `warm` found bad (damaged, unreadable, wrongly signed)
    and computed again (``on_bad_entry="recompute"``)."""
    evicted: int = 0
    """Entries this store evicted to keep within its limits (`max_size`, ...)."""
    bytes_read: int = 0
    bytes_written: int = 0
    read_seconds: float = 0.0
    write_seconds: float = 0.0
    compute_seconds: float = 0.0

    def reset(self) -> None:
        """Zero every counter."""
        for field in dataclasses.fields(self):
            setattr(self, field.name, field.default)

    def as_dict(self) -> dict[str, float]:
        """The counters as a plain dict (for logs and JSON)."""
        return dataclasses.asdict(self)
