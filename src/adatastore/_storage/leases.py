"""Cross-machine single-flight locks on storage that offers conditional writes: leases.

A lease is one small object naming its holder and when it expires. It is taken by
creating the object only if it is absent (``If-None-Match: *``), renewed by replacing it
only if it is still ours (``If-Match: <etag>``), taken over once expired by replacing the
expired one only if it has not changed meanwhile, and released by deleting it only if it
is still ours. A server that enforces those conditions (S3 does since 2024;
`tests/test_s3_server.py` checks the test server) lets exactly one process hold a lease,
with no database and no server of our own.

A holder that dies (SIGKILL, a lost machine) stops renewing: its lease expires after
`seconds` and the next waiter takes it over. A holder alive but cut off long enough to
lose its lease finds out at its next renewal (logged); the value is then stored twice at
worst, never torn. Expiry compares the clock of the machine looking with the one written
by the holder: clocks must agree to well within a lease (NTP does).

Renewal runs in one daemon thread per `Leases` (not on an event loop), so it goes on
while a computation blocks the loop or runs in a thread of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import anyio
import anyio.to_thread

from .._runtime import forks as _forks
from ..stats import logger

__all__ = ["ConditionalObjects", "Leases", "lease_expired"]

_MAX_LEASE_BYTES = 4096  # a lease object larger than this is not ours: treated as expired


class ConditionalObjects(Protocol):
    """Blocking conditional operations on small objects, by name."""

    def create(self, name: str, body: bytes) -> str | None:
        """Create `name` if absent; its etag, or None when it exists."""

    def replace(self, name: str, body: bytes, etag: str) -> str | None:
        """Replace `name` if its etag is `etag`; the new etag, or None when it is not."""

    def fetch(self, name: str) -> tuple[bytes, str] | None:
        """The body and etag of `name`, or None when it does not exist."""

    def remove(self, name: str, etag: str) -> None:
        """Delete `name` if its etag is `etag` (nothing when it is not)."""


@dataclass
class _Held:
    name: str
    etag: str
    renew_at: float


class Leases:
    """The leases one store takes (see the module docstring); safe for threads."""

    def __init__(self, objects: ConditionalObjects, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"a lease must last a positive number of seconds, not {seconds!r}")
        self.objects = objects
        self.seconds = seconds
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"
        self._held: dict[str, _Held] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._generation = _forks.generation()

    # -- one attempt (blocking) -------------------------------------------------------------

    def _body(self) -> bytes:
        expires = time.time() + self.seconds
        return json.dumps({"holder": self.holder, "expires": expires}).encode()

    def try_take(self, name: str) -> bool:
        """Take the lease `name` if it is free or expired; whether it is now ours."""
        etag = self.objects.create(name, self._body())
        if etag is None:
            found = self.objects.fetch(name)
            if found is None:  # released meanwhile: try once more at the next poll
                return False
            body, current = found
            if not lease_expired(body):
                return False
            etag = self.objects.replace(name, self._body(), current)
            if etag is None:  # someone else took it over first
                return False
            logger.info("took over the expired lease %s", name)
        self._remember(name, etag)
        return True

    def release(self, name: str) -> None:
        """Give the lease back (delete it, if it is still ours)."""
        with self._changed:
            held = self._held.pop(name, None)
            self._changed.notify()  # the renewal thread ends when nothing is held
        if held is not None:
            self.objects.remove(name, held.etag)

    # -- renewal ----------------------------------------------------------------------------

    def _remember(self, name: str, etag: str) -> None:
        with self._changed:
            self._held[name] = _Held(name, etag, time.monotonic() + self.seconds / 3)
            if self._thread is None or self._generation != _forks.generation():
                self._generation = _forks.generation()
                self._thread = threading.Thread(
                    target=self._renew_forever, name="adatastore-leases", daemon=True
                )
                self._thread.start()
            self._changed.notify()

    def _renew_forever(self) -> None:
        """Renew what is held, when due; end once nothing is (`_remember` starts another:
        a store that no longer computes keeps no thread)."""
        while True:
            with self._changed:
                if not self._held:
                    self._thread = None
                    return
                due = [held for held in self._held.values() if held.renew_at <= time.monotonic()]
                if not due:
                    wait = min(held.renew_at for held in self._held.values())
                    self._changed.wait(max(0.0, wait - time.monotonic()))
                    continue
            for held in due:
                self._renew(held)

    def _renew(self, held: _Held) -> None:
        try:
            etag = self.objects.replace(held.name, self._body(), held.etag)
        except Exception as error:  # a failed renewal is retried; the lease may lapse
            logger.warning("could not renew the lease %s: %s", held.name, error)
            etag = held.etag
            pause = min(1.0, self.seconds / 10)
        else:
            pause = self.seconds / 3
            if etag is None:
                logger.warning(
                    "lost the lease %s (not renewed in time, and taken over): the value "
                    "may be computed twice",
                    held.name,
                )
        with self._changed:
            if self._held.get(held.name) is not held:
                return  # released meanwhile
            if etag is None:
                del self._held[held.name]
            else:
                held.etag, held.renew_at = etag, time.monotonic() + pause

    def forget(self) -> None:
        """In a forked child: the parent's leases and renewal thread are not ours."""
        self._held = {}
        self._changed = threading.Condition()
        self._thread = None
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"

    # -- the lock ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def hold(self, name: str, patience: float | None) -> AsyncIterator[bool]:
        """Hold the lease `name`; yields whether it was taken (False after `patience`
        seconds of waiting: the caller goes ahead unlocked). Waiting polls, with a pause
        growing to a second: each attempt is a request."""
        taken = await anyio.to_thread.run_sync(self.try_take, name)
        pause = 0.02
        if not taken and patience != 0:
            with anyio.move_on_after(patience):
                while not taken:
                    await anyio.sleep(pause)
                    pause = min(pause * 1.5, 1.0)
                    taken = await anyio.to_thread.run_sync(self.try_take, name)
        try:
            yield taken
        finally:
            if taken:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.release, name)


def lease_expired(body: bytes) -> bool:
    """Whether a lease object says it has expired (or is not a lease of ours)."""
    if len(body) > _MAX_LEASE_BYTES:
        return True
    try:
        expires = json.loads(body)["expires"]
        return not (isinstance(expires, float | int) and time.time() < expires)
    except (ValueError, TypeError, KeyError, RecursionError):
        return True
