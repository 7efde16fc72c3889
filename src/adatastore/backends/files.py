"""The files back-end: a directory of entries, one sub-directory per component.

Layout under ``root_dir``::

    .adatastore                    marker: format name and version
    <encoded key>/component.json   the component's type, version, parameters, input keys
    <encoded key>/<encoded name>.rec   one record per attribute

Names are encoded by `adatastore._naming` (no path separators, no leading dot, long names
shortened with a digest), so nothing a user passes can reach outside ``root_dir``. Writes
go to a temp file that takes the target's place atomically (`_fsio.atomic_write`): readers
and other processes see the old record or the new one, never a torn one, even if the
writer is killed.

Each async operation is one hop to a worker thread (`anyio.to_thread`), which is faster
than aiofiles' hop per call and runs on asyncio and trio alike; the blocking class calls
the same functions in its own thread.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import secrets
import shutil
import socket
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

from .. import _fsio, _locks, _naming, _record
from ..errors import ConfigurationError, StorageError
from ..keygenerators import KeyGenerator
from ..serializers import Buffer, Serializer
from ..signing import SigningKey
from ..store import AsyncDataStore, ComponentRecord, Entry

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "AsyncShelveDataStore"]

FORMAT_NAME = "adatastore-files"
FORMAT_VERSION = 1
MARKER = ".adatastore"
COMPONENT_FILE = "component.json"
RECORD_SUFFIX = ".rec"
LOCK_DIR = ".locks"  # one flock file per entry, where OFD locks are missing
LOCK_FILE = ".lock"
BATCH_DIR = ".batches"  # store_many's staging directories and plans
_HOST = socket.gethostname().replace("-", "_") or "localhost"
_RETRIES = 100  # a store racing deletes of the same entry tries again this often

T = TypeVar("T")


class AsyncShelveDataStore(AsyncDataStore):
    """Entries as files under `root_dir` (created if missing); safe across processes.

    `durable=True` fsyncs every record and its directory before `store` returns, so
    entries survive a power cut, at about 0.4 ms per store here. Without it (the default)
    an entry survives any crash of the process, and a power cut can lose the newest ones
    (a lost record is a miss; a damaged one raises `CorruptEntryError`).
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        *,
        durable: bool = False,
        signing_key: SigningKey | None = None,
        verify_on_read: bool = True,
    ) -> None:
        super().__init__(
            key_generator, serializer, signing_key=signing_key, verify_on_read=verify_on_read
        )
        self.root_dir = Path(root_dir)  # made absolute when the store opens
        self.durable = durable
        self._lock_file: _locks.LockFile | None = None

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} {str(self.root_dir)!r}{state}>"

    # -- helpers --------------------------------------------------------------------------------

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        try:
            return await anyio.to_thread.run_sync(function, *args)
        except OSError as error:
            raise _storage_error(error, self.root_dir) from error

    def _entry_dir(self, key: str) -> str:
        return os.path.join(self.root_dir, _naming.encode_name(key))

    def _record_path(self, key: str, attribute_name: str) -> str:
        return os.path.join(
            self._entry_dir(key), _naming.encode_name(attribute_name) + RECORD_SUFFIX
        )

    # -- the raw interface ----------------------------------------------------------------------

    async def open_raw(self) -> None:
        await self._run(self._open_sync)

    def _open_sync(self) -> None:
        root = self.root_dir = self.root_dir.absolute()  # here: getcwd is a system call
        if root.exists() and not root.is_dir():
            raise ConfigurationError(f"root_dir {str(root)!r} exists and is not a directory")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):  # a parent is a file
            raise ConfigurationError(
                f"root_dir {str(root)!r} cannot be created: a parent is not a directory"
            ) from None
        marker = root / MARKER
        try:
            found = json.loads(marker.read_bytes())
        except FileNotFoundError:
            content = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION}).encode()
            _fsio.atomic_write(str(marker), [content], durable=self.durable)
            self._make_lock_file()
            return
        except ValueError:
            raise ConfigurationError(f"{str(marker)!r} is not an adatastore marker") from None
        if not isinstance(found, dict) or found.get("format") != FORMAT_NAME:
            raise ConfigurationError(f"{str(marker)!r} is not an adatastore marker")
        if found.get("version") != FORMAT_VERSION:
            raise ConfigurationError(
                f"{str(root)!r} holds format version {found.get('version')!r}; "
                f"this adatastore reads version {FORMAT_VERSION}"
            )
        self._make_lock_file()
        with contextlib.suppress(PermissionError, OSError):  # read-only storage reads on
            self._recover_batches()

    def _make_lock_file(self) -> None:
        if _locks.LockFile.supported() and self._lock_file is None:
            # opened at its first use: read-only storage can still be read
            self._lock_file = _locks.LockFile(self.root_dir / LOCK_FILE)
            # a store dropped unclosed lets its descriptor go when it is collected
            weakref.finalize(self, self._lock_file.close).atexit = False

    async def write_raw(
        self,
        key: str,
        attribute_name: str,
        record: Sequence[Buffer],
        component: ComponentRecord,
    ) -> None:
        await self._run(
            self._write_sync,
            self._entry_dir(key),
            self._record_path(key, attribute_name),
            record,
            component,
        )

    def _write_sync(
        self, entry_dir: str, path: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        """Write one record atomically, and the component's metadata if it is missing.

        Linearizable against a concurrent `delete` (which removes the metadata and the
        directory once no record is left): the metadata is checked again after the
        record is in place, and a directory removed under us is made again. A retry
        loop, not a lock: a delete never waits for a store, nor a store for a delete.
        """
        meta = os.path.join(entry_dir, COMPONENT_FILE)
        for attempt in itertools.count():
            try:
                try:
                    os.mkdir(entry_dir)
                    fresh = True
                except FileExistsError:
                    fresh = False
                if fresh or not os.path.exists(meta):
                    _fsio.atomic_write(
                        meta, [component.to_json()], durable=self.durable, fresh=fresh
                    )
                _fsio.atomic_write(path, record, durable=self.durable, fresh=fresh)
                if not os.path.exists(meta):  # a delete took it after we checked
                    _fsio.atomic_write(meta, [component.to_json()], durable=self.durable)
            except FileNotFoundError:
                # A concurrent delete removed the entry directory between our steps,
                # or root_dir itself is gone: try again, then report.
                if attempt >= _RETRIES or not self.root_dir.is_dir():
                    raise
            else:
                return

    # -- the direct blocking path (the blocking class calls these in its own thread) -----------

    supports_blocking = True

    def _blocking(self, function: Callable[..., T], *args: object) -> T:
        try:
            return function(*args)
        except OSError as error:
            raise _storage_error(error, self.root_dir) from error

    def open_raw_blocking(self) -> None:
        self._blocking(self._open_sync)

    def write_raw_blocking(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        self._blocking(
            self._write_sync,
            self._entry_dir(key),
            self._record_path(key, attribute_name),
            record,
            component,
        )

    def read_raw_blocking(self, key: str, attribute_name: str) -> Buffer | None:
        return self._blocking(_fsio.read_file, self._record_path(key, attribute_name))

    def contains_raw_blocking(self, key: str, attribute_name: str) -> bool:
        return os.path.isfile(self._record_path(key, attribute_name))

    def close_raw_blocking(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()

    async def write_many_raw(
        self, records: Sequence[tuple[str, str, Sequence[Buffer], ComponentRecord]]
    ) -> None:
        """Every record, all or nothing, in one worker-thread hop (see `_write_batch`)."""
        jobs = [
            (self._entry_dir(key), self._record_path(key, name), record, component)
            for key, name, record, component in records
        ]
        await self._run(self._write_batch, jobs)

    def _write_batch(
        self, jobs: Sequence[tuple[str, str, Sequence[Buffer], ComponentRecord]]
    ) -> None:
        """Write several records, all or nothing, also if this process dies.

        Every record (and its component's metadata) is written first into a staging
        directory ``.batches/<host>-<pid>-<random>/``: a failure there (a full disk)
        removes it, and nothing was stored. Then the plan ``<staging>.json`` is written,
        atomically: the commit point. Then the records move into place, each as a
        single store would. A writer that dies before the plan leaves a staging
        directory that the next open removes; one that dies after it leaves a plan that
        the next open carries out.
        """
        if len(jobs) == 1:
            self._write_sync(*jobs[0])
            return
        batches = os.path.join(self.root_dir, BATCH_DIR)
        staging = os.path.join(batches, f"{_HOST}-{os.getpid()}-{secrets.token_hex(8)}")
        try:
            os.makedirs(staging)
            plan = []
            for number, (entry_dir, path, record, component) in enumerate(jobs):
                _fsio.write_new(
                    os.path.join(staging, f"{number}.rec"), record, durable=self.durable
                )
                _fsio.write_new(
                    os.path.join(staging, f"{number}.json"),
                    [component.to_json()],
                    durable=self.durable,
                )
                plan.append([os.path.basename(entry_dir), os.path.basename(path)])
            _fsio.atomic_write(staging + ".json", [json.dumps(plan).encode()], durable=self.durable)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._carry_out(staging, plan)

    def _carry_out(self, staging: str, plan: list[list[str]]) -> None:
        """Move a committed batch's records into place (again, after a crash: idempotent)."""
        for number, (entry, name) in enumerate(plan):
            record = os.path.join(staging, f"{number}.rec")
            if not os.path.exists(record):
                continue  # moved before the crash
            with open(os.path.join(staging, f"{number}.json"), "rb") as stream:
                meta = stream.read()
            self._move_in(os.path.join(self.root_dir, entry), record, name, meta)
        os.unlink(staging + ".json")
        shutil.rmtree(staging, ignore_errors=True)

    def _move_in(self, entry_dir: str, record: str, name: str, meta: bytes) -> None:
        """Move a staged record into its entry, as `_write_sync` writes one."""
        meta_path = os.path.join(entry_dir, COMPONENT_FILE)
        for attempt in itertools.count():
            try:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(entry_dir)
                if not os.path.exists(meta_path):
                    _fsio.atomic_write(meta_path, [meta], durable=self.durable)
                os.replace(record, os.path.join(entry_dir, name))
                if not os.path.exists(meta_path):
                    _fsio.atomic_write(meta_path, [meta], durable=self.durable)
            except FileNotFoundError:
                if attempt >= _RETRIES or not self.root_dir.is_dir():
                    raise
            else:
                if self.durable:
                    _fsio.fsync_directory(entry_dir)
                return

    def _recover_batches(self) -> None:
        """Finish or remove the batches of writers of this host that died."""
        batches = os.path.join(self.root_dir, BATCH_DIR)
        try:
            names = os.listdir(batches)
        except FileNotFoundError:
            return
        for name in sorted(names):
            writer, _, _ = name.removesuffix(".json").rpartition("-")
            host, _, pid = writer.rpartition("-")
            if host != _HOST or not pid.isdigit() or _fsio.process_alive(int(pid)):
                continue
            path = os.path.join(batches, name)
            if name.endswith(".json"):
                plan = _read_plan(path)
                if plan is None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                else:
                    self._carry_out(path.removesuffix(".json"), plan)
            elif not os.path.exists(path + ".json"):
                shutil.rmtree(path, ignore_errors=True)  # died before its commit point

    async def read_many_raw(self, pairs: Sequence[tuple[str, str]]) -> list[Buffer | None]:
        paths = [self._record_path(key, name) for key, name in pairs]
        return await self._run(lambda: [_fsio.read_file(path) for path in paths])

    async def read_head_raw(self, key: str, attribute_name: str, size: int) -> Buffer | None:
        return await self._run(_fsio.read_head, self._record_path(key, attribute_name), size)

    async def read_raw(self, key: str, attribute_name: str) -> Buffer | None:
        return await self._run(_fsio.read_file, self._record_path(key, attribute_name))

    async def contains_raw(self, key: str, attribute_name: str) -> bool:
        return await self._run(os.path.isfile, self._record_path(key, attribute_name))

    async def contains_many_raw(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        paths = [(pair, self._record_path(*pair)) for pair in pairs]
        return await self._run(lambda: {pair for pair, path in paths if os.path.isfile(path)})

    async def delete_raw(self, key: str, attribute_name: str | None) -> int:
        path = None if attribute_name is None else self._record_path(key, attribute_name)
        return await self._run(self._delete_sync, self._entry_dir(key), path)

    def _delete_sync(self, entry_dir: str, path: str | None) -> int:
        """Delete one record (or all); remove the entry once no record is left.

        A store racing this delete may add a record at any step: the metadata is removed
        only when no record is seen, and put back if a record shows up before the
        directory is gone (see `_write_sync`).
        """
        meta = os.path.join(entry_dir, COMPONENT_FILE)
        try:
            with open(meta, "rb") as stream:
                saved: bytes | None = stream.read()
        except FileNotFoundError:
            saved = None
        if path is not None:
            doomed = [path]
        else:
            try:
                doomed = [
                    os.path.join(entry_dir, name)
                    for name in os.listdir(entry_dir)
                    if name.endswith(RECORD_SUFFIX)
                ]
            except FileNotFoundError:
                return 0
        deleted = 0
        for item in doomed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(item)
                deleted += 1
        self._remove_if_empty(entry_dir, saved)
        return deleted

    def _remove_if_empty(self, entry_dir: str, saved_meta: bytes | None = None) -> None:
        """Remove the entry directory once no record is left in it."""
        if _records_in(entry_dir):
            return
        meta = os.path.join(entry_dir, COMPONENT_FILE)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(meta)
        try:
            os.rmdir(entry_dir)
        except FileNotFoundError:
            return
        except OSError:  # not empty: a store got there first
            if saved_meta is not None and _records_in(entry_dir) and not os.path.exists(meta):
                with contextlib.suppress(FileNotFoundError):
                    _fsio.atomic_write(meta, [saved_meta], durable=self.durable)

    async def list_raw(self) -> list[Entry]:
        return await self._run(self._list_sync)

    def lock_raw(
        self, key: str, attribute_name: str, timeout: float | None
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        if self._lock_file is not None:
            return self._lock_file.hold(key, attribute_name, timeout)
        lock = _locks.FileLock(self.root_dir / LOCK_DIR / (_locks.lock_name(key, attribute_name)))
        return lock.hold(timeout)

    async def close_raw(self) -> None:
        if self._lock_file is not None:
            await anyio.to_thread.run_sync(self._lock_file.close)

    async def cleanup_raw(self, older_than: float) -> int:
        return await self._run(self._cleanup_sync, older_than)

    def _cleanup_sync(self, older_than: float) -> int:
        """Remove stale temp files, then entry directories left without records."""
        now = time.time()
        temps = [str(p) for p in self.root_dir.glob(_fsio.TEMP_PREFIX + "*")]
        entry_dirs = []
        with os.scandir(self.root_dir) as directories:
            for directory in directories:
                if directory.name.startswith(".") or not directory.is_dir(follow_symlinks=False):
                    continue
                if not os.path.exists(os.path.join(directory.path, COMPONENT_FILE)):
                    continue  # not one of ours
                entry_dirs.append(directory.path)
                temps.extend(
                    os.path.join(directory.path, name)
                    for name in os.listdir(directory.path)
                    if name.startswith(_fsio.TEMP_PREFIX)
                )
        removed = _fsio.remove_stale(temps, older_than, now)
        for entry_dir in entry_dirs:
            meta = os.path.join(entry_dir, COMPONENT_FILE)
            try:
                names = os.listdir(entry_dir)
                stale = now - os.stat(meta).st_mtime > older_than
            except FileNotFoundError:
                continue
            if stale and not any(name.endswith(RECORD_SUFFIX) for name in names):
                self._remove_if_empty(entry_dir)
                removed += 1
        return removed

    async def components_raw(self, full_type: str | None) -> list[ComponentRecord]:
        return await self._run(self._components_sync, full_type)

    def _components_sync(self, full_type: str | None) -> list[ComponentRecord]:
        records = []
        with os.scandir(self.root_dir) as directories:
            for directory in directories:
                if directory.name.startswith(".") or not directory.is_dir(follow_symlinks=False):
                    continue
                try:
                    data = Path(directory.path, COMPONENT_FILE).read_bytes()
                    record = ComponentRecord.from_json(data)
                except (OSError, ValueError):
                    continue  # not ours, being written, or damaged (verify reports it)
                if full_type is None or record.full_type == full_type:
                    records.append(record)
        return records

    def _list_sync(self) -> list[Entry]:
        entries: list[Entry] = []
        with os.scandir(self.root_dir) as directories:
            for directory in directories:
                if directory.name.startswith(".") or not directory.is_dir(follow_symlinks=False):
                    continue
                entries.extend(self._list_entry(directory.path))
        return entries

    def _list_entry(self, entry_dir: str) -> list[Entry]:
        try:
            component = ComponentRecord.from_json(Path(entry_dir, COMPONENT_FILE).read_bytes())
        except OSError:
            # Not an entry of ours (root_dir may be shared, e.g. /tmp, with directories we
            # cannot read), or one being created or deleted right now.
            return []
        except ValueError:
            component = ComponentRecord(
                key=_decode_or(os.path.basename(entry_dir)),
                full_type="",
                version="",
                parameters=None,
                input_keys=(),
            )
        entries: list[Entry] = []
        try:
            files = os.scandir(entry_dir)
        except OSError:
            return entries
        with files:
            for file in files:
                if not file.name.endswith(RECORD_SUFFIX) or file.name.startswith("."):
                    continue
                try:
                    stat = file.stat()
                    name = _attribute_name(file.path, file.name[: -len(RECORD_SUFFIX)])
                except FileNotFoundError:
                    continue  # deleted while we listed
                entries.append(
                    Entry(
                        key=component.key,
                        attribute_name=name,
                        full_type=component.full_type,
                        version=component.version,
                        size=stat.st_size,
                        stored_at=datetime.fromtimestamp(stat.st_mtime, UTC),
                    )
                )
        return entries


def _read_plan(path: str) -> list[list[str]] | None:
    """A batch's plan, if it is one we wrote: pairs of plain names, nothing else."""
    try:
        with open(path, "rb") as stream:
            plan = json.loads(stream.read())
    except (OSError, ValueError):
        return None
    if not isinstance(plan, list):
        return None
    for item in plan:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and all(isinstance(part, str) and _plain_name(part) for part in item)
            and item[1].endswith(RECORD_SUFFIX)
        ):
            return None
    return plan


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def _records_in(entry_dir: str) -> bool:
    try:
        return any(name.endswith(RECORD_SUFFIX) for name in os.listdir(entry_dir))
    except FileNotFoundError:
        return False


def _decode_or(encoded: str) -> str:
    try:
        return _naming.decode_name(encoded)
    except ValueError:
        return encoded


def _attribute_name(path: str, encoded: str) -> str:
    """The attribute name of a record file: decoded, or read from the record's header."""
    if not _naming.is_shortened(encoded):
        return _decode_or(encoded)
    with open(path, "rb") as stream:
        head = stream.read(4096)
    try:
        header, _ = _record.read_header(head)
    except _record.DamagedRecord:
        return encoded
    return header.attribute_name


def _storage_error(error: OSError, root: Path) -> StorageError:
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EFBIG: "the file is larger than allowed",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
    }
    reason = reasons.get(error.errno or 0, error.strerror or str(error))
    return StorageError(f"store under {str(root)!r}: {reason} ({error})")
