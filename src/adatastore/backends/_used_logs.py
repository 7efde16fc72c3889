"""When entries were last read, as logs beside the entries: in a store of files
(`UsedLogs`) and in a bucket (`encode_lines`, `merge_lines`). Not atime.

``root_dir/.used/`` holds one append-only log per process (``<host>-<pid>-<random>.log``):
each batch of reads is one ``write`` of JSON lines ``[key, name, seconds]`` to the
process's own log, so writers never interleave. Reading merges every log (the latest time
wins); a trim then writes the merged times of the entries still stored to a new log and
removes the ones it read, so the directory stays small. A process appending to a log
while it is being merged loses that batch: its reads count as older than they were
(eviction order, never data). atime is not used: ``noatime``/``relatime`` mounts (the
Linux default) do not keep it.

The logs are read as untrusted input: only regular files beneath ``.used`` (no links
followed), each at most `LOG_MOST` bytes, lines that are not ``[str, str, number]``
skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
from collections.abc import Sequence

from .._storage.beneath import Directory, UnsafePath
from ..backend import Used
from ..stats import logger
from ._bucket import Bucket

__all__ = [
    "LOG_MOST",
    "USED_DIR",
    "BucketLogs",
    "UsedLogs",
    "encode_lines",
    "merge_lines",
    "note_time",
    "skipped_notes",
]

USED_DIR = ".used"
LOG_MOST = 1 << 25
"""Bytes of one log read at most (32 MiB: ~300,000 entries); beyond, it is not ours."""
_SUFFIX = ".log"
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOCTTY


class UsedLogs:
    """The read logs of one store of files."""

    def __init__(self) -> None:
        self._pid = -1
        self._name = ""

    @property
    def name(self) -> str:
        """This process's log (a forked child gets one of its own)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            host = socket.gethostname().replace("-", "_") or "localhost"
            self._name = f"{host}-{self._pid}-{secrets.token_hex(4)}{_SUFFIX}"
        return self._name

    def append(self, root: Directory, used: Sequence[Used]) -> None:
        """Add a batch of read times to this process's log."""
        lines = encode_lines(used)
        with root.subdirectory(USED_DIR, create=True) as logs:
            fd = logs.open_file(self.name, _APPEND, 0o666)
            try:
                view = memoryview(lines)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)

    def read(self, root: Directory) -> tuple[dict[tuple[str, str], float], list[str]]:
        """The latest read time of each entry in every log, and the logs' names."""
        used: dict[tuple[str, str], float] = {}
        try:
            logs = root.subdirectory(USED_DIR)
        except (FileNotFoundError, UnsafePath):
            return used, []
        names, skipped = [], 0
        with logs:
            for item in logs.scan():
                if not item.name.endswith(_SUFFIX) or not item.is_file(follow_symlinks=False):
                    continue
                with contextlib.suppress(OSError):
                    if item.stat(follow_symlinks=False).st_size > LOG_MOST:
                        continue
                    data = logs.read(item.name)
                    if data is None:
                        continue
                    names.append(item.name)
                    skipped += merge_lines(bytes(data), used)
        skipped_notes(skipped, logs.path)
        return used, names

    def compact(
        self, root: Directory, kept: dict[tuple[str, str], float], read: list[str], noted: int
    ) -> None:
        """Replace the logs `read` (`noted` entries in all) by one holding `kept`, the
        times of the entries still stored; nothing to do for one log of stored entries."""
        if len(read) <= 1 and len(kept) == noted:
            return
        with root.subdirectory(USED_DIR, create=True) as logs:
            if kept:
                lines = encode_lines([(key, name, when) for (key, name), when in kept.items()])
                name = f"merged-{secrets.token_hex(8)}{_SUFFIX}"
                logs.atomic_write(name, [lines], durable=False, fresh=True)
            for name in read:
                logs.unlink(name)


def encode_lines(used: Sequence[Used]) -> bytes:
    """A log's lines: JSON ``[key, name, seconds]``, ASCII (any name is escaped)."""
    return "".join(
        json.dumps([key, name, float(when)], ensure_ascii=True) + "\n" for key, name, when in used
    ).encode("ascii")


def merge_lines(data: bytes, used: dict[tuple[str, str], float]) -> int:
    """Merge a log's lines into `used` (the latest time wins); return how many lines
    were skipped as malformed (not ``[str, str, time]``: a time is a finite number of
    seconds between 1970 and 9999 — a planted 400-digit int is skipped, not fatal)."""
    skipped = 0
    for line in data.splitlines():
        try:
            key, name, when = json.loads(line)
        except (ValueError, TypeError, RecursionError):
            skipped += 1
            continue
        seconds = note_time(when)
        if not (isinstance(key, str) and isinstance(name, str) and seconds is not None):
            skipped += 1
        elif seconds > used.get((key, name), -1.0):
            used[key, name] = seconds
    return skipped


def note_time(value: object) -> float | None:
    """A read note's time as seconds since the epoch, or None when it is not a plausible
    one (not a number, not finite, before 1970 or after 9999): notes are read from shared
    storage, where anyone with write access can plant one."""
    if type(value) not in (int, float):
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except OverflowError:
        return None
    return seconds if 0.0 <= seconds < 253402300800.0 else None  # NaN compares false


def skipped_notes(skipped: int, where: str) -> None:
    """Log read notes skipped as malformed (they order eviction only: never fatal)."""
    if skipped:
        logger.warning("%s: %d malformed read notes skipped (damaged or planted)", where, skipped)


class BucketLogs:
    """The read logs of a store in a bucket: objects under ``<prefix>/u/``. S3 cannot
    append, so each batch is an object of its own (``<host>-<pid>-<random>-<n>.log``);
    merging them (at each trim) keeps their number small."""

    def __init__(self, objects: Bucket, under: str) -> None:
        self.objects = objects
        self.under = under if under.endswith("/") else under + "/"
        self._pid = -1
        self._token = ""
        self._sequence = 0

    def append(self, used: Sequence[Used]) -> None:
        if self._pid != os.getpid():  # a forked child: names of its own
            self._pid = os.getpid()
            host = socket.gethostname().replace("-", "_") or "localhost"
            self._token = f"{host}-{self._pid}-{secrets.token_hex(4)}"
        self._sequence += 1
        self.objects.put(f"{self.under}{self._token}-{self._sequence}{_SUFFIX}", encode_lines(used))

    def read(self) -> tuple[dict[tuple[str, str], float], list[str]]:
        """The latest read time of each entry in every log, and the logs' names."""
        used: dict[tuple[str, str], float] = {}
        names, skipped = [], 0
        for item in self.objects.listing(self.under):
            name = str(item["Key"])
            if not name.endswith(_SUFFIX) or int(item.get("Size", 0)) > LOG_MOST:
                continue
            found = self.objects.get(name)
            if found is None:
                continue
            names.append(name)
            skipped += merge_lines(found["Body"].read(LOG_MOST), used)
        skipped_notes(skipped, self.under)
        return used, names

    def compact(self, kept: dict[tuple[str, str], float], read: list[str], noted: int) -> None:
        """As `UsedLogs.compact`: one log of the entries still stored replaces those read."""
        if len(read) <= 1 and len(kept) == noted:
            return
        if kept:
            lines = encode_lines([(key, name, when) for (key, name), when in kept.items()])
            self.objects.put(f"{self.under}merged-{secrets.token_hex(8)}{_SUFFIX}", lines)
        self.objects.delete_many(read)
