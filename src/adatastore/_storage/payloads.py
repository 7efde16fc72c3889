"""Record files kept beside a database (SQLite's payload directory, Django's data_root_dir).

Layout under the directory::

    .tmp/<host>-<pid>-<hex>.rec   being written; moved into place by the transaction that
                                  stores its row (see the SQLite and Django back-ends)
    <hh>/<hex>.rec                a record, written once, never changed; <hh> = hex[:2]

A database row names a record by ``<hex>.rec`` (32 lowercase hex digits). Rows are data
anyone with write access to the database can change, so a name is used only if it is
exactly of that form (`is_name`): never a path, never ``..``, and every file is reached
beneath the directory's descriptor without following links (`adatastore._storage.beneath`).
Clean-up removes only files of exactly these forms, and temporary files only of writers
of this host that are dead; anything else it finds is reported, never deleted.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ..errors import ConfigurationError, CorruptEntryError, DataStoreError
from ..serializers import Buffer
from ..stats import logger
from . import fsio as _fsio
from .beneath import Directory, UnsafePath
from .fsio import MapMode

__all__ = [
    "TEMP_DIR",
    "NotOurs",
    "PayloadFiles",
    "PayloadStore",
    "foreign_name",
    "is_name",
    "missing",
]

TEMP_DIR = ".tmp"
HOST = socket.gethostname().replace("-", "_") or "localhost"
_NAME = re.compile(r"[0-9a-f]{32}\.rec\Z")


def is_name(name: object) -> bool:
    """Whether `name` is a record file name this module makes (and so may be used)."""
    return isinstance(name, str) and _NAME.match(name) is not None


class PayloadStore(Protocol):
    """Where a database back-end keeps its large records: `PayloadFiles` (a directory), or
    `adatastore.backends._bucket_payloads.BucketPayloads` (a bucket)."""

    path: Any

    def close(self) -> None: ...
    def write_temp(self, record: Sequence[Buffer], *, durable: bool) -> tuple[str, str]: ...
    def move_in(self, temp: str, name: str, *, durable: bool) -> None: ...
    def remove_temp(self, temp: str) -> None: ...
    def remove(self, name: str) -> None: ...
    def read(self, name: str, mapped: MapMode | None = None) -> Buffer | None: ...
    def read_entry(
        self, key: str, attribute_name: str, name: str, mapped: MapMode | None = None
    ) -> Buffer | None: ...
    def read_head_or_none(self, name: str, size: int) -> bytes | None: ...
    def place_exists(self) -> bool: ...
    def remove_dead_temps(self, older_than: float | None = None) -> int: ...
    def remove_unreferenced(
        self, referenced: set[str], older_than: float
    ) -> tuple[int, list[str]]: ...


def missing(payloads: PayloadStore, key: str, attribute_name: str, what: str) -> DataStoreError:
    """The error of a row whose record file (or object) is not there: damage when the
    store's place for records is there (the file was deleted by hand), a
    `ConfigurationError` when the place itself is not: the store was opened with the
    wrong directory or bucket, and nothing may be judged damaged (``verify --repair``
    would delete every row)."""
    place = str(payloads.path)
    if not payloads.place_exists():
        return ConfigurationError(
            f"entry {attribute_name!r} of component {key!r}: its {what} is in {place!r}, "
            "which is not there: was the store opened with the wrong data_root_dir or "
            "payloads location?"
        )
    return CorruptEntryError(
        key, attribute_name, f"its {what} is missing from {place!r} (deleted by hand?)"
    )


def foreign_name(key: str, attribute_name: str, name: str) -> CorruptEntryError:
    """The damage of an entry whose row names a payload adatastore did not make."""
    return CorruptEntryError(
        key,
        attribute_name,
        f"its row names the payload file {name!r}, which is not a name adatastore makes "
        "(planted, or damage): never opened",
    )


class NotOurs(ValueError):
    """A name read from a database that adatastore did not make."""


class PayloadFiles:
    """One directory of record files (see the module docstring); safe for threads.

    It is `names` inside `base`: `base` (the database's directory, or data_root_dir) may
    be reached through links, the names inside it are opened without following any (a
    link planted as ``<db>-payloads`` would otherwise send the records elsewhere).
    """

    def __init__(self, base: Path, *names: str) -> None:
        self.base = base
        self.names = names
        self.path = base.joinpath(*names)
        self._lock = threading.Lock()
        self._directory: Directory | None = None

    def directory(self, *, create: bool = False) -> Directory | None:
        """The directory, held open (None when it does not exist and `create` is false)."""
        if self._directory is None:
            with self._lock:
                if self._directory is None:
                    try:
                        self._directory = self._open(create)
                    except FileNotFoundError:
                        return None
        return self._directory

    def _open(self, create: bool) -> Directory:
        if create:
            self.base.mkdir(parents=True, exist_ok=True)
        directory = Directory.open(str(self.base))
        try:
            for name in self.names:
                inner = directory.subdirectory(name, create=create)
                directory.close()
                directory = inner
        except BaseException:
            directory.close()
            raise
        return directory

    def close(self) -> None:
        with self._lock:
            directory, self._directory = self._directory, None
        if directory is not None:
            directory.close()

    @staticmethod
    def relative(name: str) -> str:
        """Where a record lives inside the directory (fanned out by prefix)."""
        if not is_name(name):
            raise NotOurs(name)
        return f"{name[:2]}/{name}"

    # -- writing ---------------------------------------------------------------------------------

    def write_temp(self, record: Sequence[Buffer], *, durable: bool) -> tuple[str, str]:
        """Write a record under a temporary name; return (its final name, the temp name)."""
        root = self.directory(create=True)
        assert root is not None
        name = secrets.token_hex(16) + ".rec"
        temp = f"{HOST}-{os.getpid()}-{name}"
        with root.subdirectory(TEMP_DIR, create=True) as temps:
            temps.write_new(temp, record, durable=durable)
        return name, temp

    def move_in(self, temp: str, name: str, *, durable: bool) -> None:
        """Move a temporary file to its final name (inside the caller's transaction)."""
        root = self.directory(create=True)
        assert root is not None
        with (
            root.subdirectory(TEMP_DIR) as temps,
            root.subdirectory(name[:2], create=True) as fan,
        ):
            fan.move_in(temps, temp, name)
            if durable:
                fan.fsync()

    def _existing(self) -> Directory | None:
        """The directory if it exists and is one (a planted link is left alone)."""
        try:
            return self.directory()
        except UnsafePath as error:
            logger.warning("%s: %s; leaving it alone", self.path, error)
            return None

    def remove(self, name: str) -> None:
        """Remove a record file by name; names that are not ours are left alone."""
        if not is_name(name):
            logger.warning("not removing %r: not a record file name adatastore makes", name)
            return
        root = self._existing()
        if root is None:
            return
        with (
            contextlib.suppress(FileNotFoundError, UnsafePath),
            root.subdirectory(name[:2]) as fan,
        ):
            fan.unlink(name)  # before the call returns: a write or delete frees its space

    def remove_temp(self, temp: str) -> None:
        root = self._existing()
        if root is None:
            return
        with (
            contextlib.suppress(FileNotFoundError, UnsafePath),
            root.subdirectory(TEMP_DIR) as temps,
        ):
            temps.unlink(temp)

    # -- reading ---------------------------------------------------------------------------------

    def read(self, name: str, mapped: MapMode | None = None) -> Buffer | None:
        """A record by name (mapped with `mapped`); None when the file is gone. `NotOurs`
        for a foreign name, `UnsafePath` for a link or special file in its place."""
        relative = self.relative(name)
        root = self.directory()
        return None if root is None else root.read(relative, mapped)

    def read_entry(
        self, key: str, attribute_name: str, name: str, mapped: MapMode | None = None
    ) -> Buffer | None:
        """`read` for an entry's row: a foreign name or a link or special file in the
        record's place is the entry's damage; None when the file is gone."""
        try:
            return self.read(name, mapped)
        except NotOurs:
            raise foreign_name(key, attribute_name, name) from None
        except UnsafePath as error:
            raise CorruptEntryError(
                key, attribute_name, f"its payload file {error.relative!r} is {error.what}"
            ) from None

    def read_head_or_none(self, name: str, size: int) -> bytes | None:
        """`read_head`, None for anything but a record file (the whole read reports it)."""
        try:
            return self.read_head(name, size)
        except (NotOurs, UnsafePath):
            return None

    def read_head(self, name: str, size: int) -> bytes | None:
        relative = self.relative(name)
        root = self.directory()
        return None if root is None else root.read_head(relative, size)

    def place_exists(self) -> bool:
        """Whether the directory is there (asked when a record file is missing: made with
        the store's first record file, it is not there when the store was opened with
        the wrong directory)."""
        return self._existing() is not None

    def exists(self, name: str) -> bool:
        """Whether anything is at a record's place (a link or special file included)."""
        self.relative(name)  # NotOurs for a foreign name
        root = self.directory()
        if root is None:
            return False
        try:
            with root.subdirectory(name[:2]) as fan:
                return fan.exists(name)
        except FileNotFoundError:
            return False
        except UnsafePath:
            return True

    # -- clean-up --------------------------------------------------------------------------------

    def remove_dead_temps(self, older_than: float | None = None) -> int:
        """Remove the temporary files that writers of this host left when they died (and,
        with `older_than`, those of other hosts older than that many seconds)."""
        root = self._existing()
        if root is None:
            return 0
        try:
            temps = root.subdirectory(TEMP_DIR)
        except (FileNotFoundError, UnsafePath):
            return 0
        removed, now = 0, time.time()
        with temps:
            for item in temps.scan():
                writer, _, _ = item.name.rpartition("-")
                host, _, pid = writer.rpartition("-")
                if host == HOST and pid.isdigit():
                    doomed = not _fsio.process_alive(int(pid))
                else:
                    with contextlib.suppress(FileNotFoundError):
                        age = now - item.stat(follow_symlinks=False).st_mtime
                        doomed = older_than is not None and age > older_than
                if doomed:
                    removed += temps.unlink(item.name)
                    logger.info("removed %s, left by a writer that died", item.name)
        return removed

    def remove_unreferenced(self, referenced: set[str], older_than: float) -> tuple[int, list[str]]:
        """Remove record files no row names (older than `older_than` seconds: a write in
        progress elsewhere names its file only when it commits), and stale temporary ones.

        Returns how many were removed, and what was found that is not ours (reported,
        never removed).
        """
        root = self._existing()
        if root is None:
            return 0, []
        now = time.time()
        removed, foreign = self.remove_dead_temps(older_than), []
        for item in root.scan():
            if item.name == TEMP_DIR:
                continue
            if not (len(item.name) == 2 and item.is_dir(follow_symlinks=False)):
                foreign.append(item.name)
                continue
            with root.subdirectory(item.name) as fan:
                for file in fan.scan():
                    name = file.name
                    if not is_name(name) or name[:2] != item.name:
                        foreign.append(f"{item.name}/{name}")
                        continue
                    if name in referenced:
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        if now - file.stat(follow_symlinks=False).st_mtime > older_than:
                            removed += fan.unlink(name)
        for name in foreign:
            logger.warning("%s: %r is not a file adatastore made; left alone", self.path, name)
        return removed, foreign
