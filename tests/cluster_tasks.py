"""Compute functions for warm-ups on executors (a module of its own: workers import it).

`Logged` appends a line per start and per end of a computation to a log file, with the
worker's host and pid, so a test can count how often each component was computed and
where. Appends of a short line are atomic (``O_APPEND``) across processes.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components import PlainComponent


def points(count: int, start: int = 0) -> list[PlainComponent]:
    return [PlainComponent({"n": n}) for n in range(start, start + count)]


class ComputeFailed(Exception):
    """What `Logged` raises for the components it is told to fail."""


@dataclass(frozen=True)
class Logged:
    """n² of a component, logged; optionally failing, dying or taking some CPU time."""

    log: str
    fail: frozenset[int] = frozenset()
    die_once: int | None = None
    """Kill this process (SIGKILL) on the first computation of this n."""
    cpu_seconds: float = 0.0
    """Busy time per computation (the work of a simulation, not a synchronization)."""

    def __call__(self, component: Any) -> int:
        n = int(component.parameters["n"])
        self._write(f"start {n}")
        if n == self.die_once:
            marker = Path(self.log + f".died-{n}")
            try:
                marker.touch(exist_ok=False)
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        if n in self.fail:
            raise ComputeFailed(f"component {n} fails")
        deadline = time.process_time() + self.cpu_seconds
        while time.process_time() < deadline:
            pass
        self._write(f"done {n}")
        return n * n

    def _write(self, event: str) -> None:
        line = f"{event} {socket.gethostname()}:{os.getpid()}\n".encode()
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def read_log(log: str | Path) -> list[tuple[str, int, str]]:
    """(event, n, worker) of every line of a `Logged` log."""
    path = Path(log)
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        event, n, worker = line.split()
        events.append((event, int(n), worker))
    return events


def done_counts(log: str | Path) -> dict[int, int]:
    """How often each n was computed to its end."""
    counts: dict[int, int] = {}
    for event, n, _ in read_log(log):
        if event == "done":
            counts[n] = counts.get(n, 0) + 1
    return counts


async def tripled(component: Any) -> int:
    """An async compute: 3n."""
    return 3 * int(component.parameters["n"])
