"""The clock every store reads: one object, so that tests move time without sleeping
and a store's ages, expiry and read notes agree with the provenance it writes."""

from __future__ import annotations

import time

__all__ = ["Clock", "clock"]


class Clock:
    """Seconds since the epoch, as stores see it: what provenance's ``stored_at``,
    expiry, ages and read notes are measured with. `offset` moves it (tests move time on
    without sleeping: ``monkeypatch.setattr(clock, "offset", 3600)``)."""

    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


clock = Clock()
