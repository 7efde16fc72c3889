"""The files back-end: a directory of entries, one sub-directory per component.

Layout under ``root_dir``::

    .adatastore                    marker: format name and version
    <encoded key>/component.json   the component's type, version, parameters, input keys
    <encoded key>/<encoded name>.rec   one record per attribute
    .lock                          the entries' cross-process locks (byte ranges)
    .batches/                      `store_many` staging and plans (see `_write_batch`)
    .used/                         when entries were last read (see `_used_logs`)

Names are encoded by `adatastore._storage.naming` (no path separators, no leading dot, long names
shortened with a digest), so nothing a user passes can reach outside ``root_dir``; and
nothing planted inside it is followed: every path is resolved beneath a descriptor of
``root_dir`` without following links, and only regular files are read
(`adatastore._storage.beneath`). Writes go to a temp file that takes the target's place atomically:
readers and other processes see the old record or the new one, never a torn one, even if
the writer is killed.

Each async operation is one hop to a worker thread (`anyio.to_thread`), which is faster
than aiofiles' hop per call and runs on asyncio and trio alike; the blocking class calls
the same functions in its own thread.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import json
import os
import secrets
import socket
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar, Unpack

from .._codec import record as _record
from .._core.options import StoreOptions
from .._storage import fsio as _fsio
from .._storage import locks as _locks
from .._storage import naming as _naming
from .._storage.beneath import Directory, UnsafePath
from ..backend import BackendSpec, MapMode, RecordWrite, ThreadedBackend, Used
from ..errors import ConfigurationError, CorruptEntryError, StorageError
from ..keygenerators import KeyGenerator
from ..records import ComponentRecord, DamagedEntry, Entry, damaged_component_reason, same_record
from ..serializers import Buffer, Serializer
from ..stats import logger
from ..store import AsyncDataStore
from ..sync import SyncDataStore
from ._used_logs import UsedLogs

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "AsyncShelveDataStore",
    "FilesBackend",
    "ShelveDataStore",
]

FORMAT_NAME = "adatastore-files"
FORMAT_VERSION = 1
MARKER = ".adatastore"
COMPONENT_FILE = "component.json"
RECORD_SUFFIX = ".rec"
LOCK_DIR = ".locks"  # one flock file per entry, where OFD locks are missing
LOCK_FILE = ".lock"
BATCH_DIR = ".batches"  # store_many's staging directories and plans
_PLAN = "plan.json"  # a batch's plan, written in its staging directory first
_HOST = socket.gethostname().replace("-", "_") or "localhost"
_RETRIES = 100  # a store racing deletes of the same entry tries again this often
_MAX_JSON = 1 << 26  # a component.json or plan larger than this is not ours
_ANY = ComponentRecord("", "", "", None, ())  # for facts of a record that name no component

P = ParamSpec("P")
T = TypeVar("T")


def _storage_errors(
    method: Callable[Concatenate[FilesBackend, P], T],
) -> Callable[Concatenate[FilesBackend, P], T]:
    """An `OSError` of the method as a `StorageError` naming the store."""

    def translated(self: FilesBackend, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(self, *args, **kwargs)
        except OSError as error:
            raise _storage_error(error, self.root_dir) from error

    functools.update_wrapper(translated, method)
    return translated


class FilesBackend(ThreadedBackend):
    """Records as files under `root_dir` (see the module docstring and
    `AsyncShelveDataStore`). Every method is a blocking call, translated to
    `StorageError` on an `OSError`; the async methods run them in a worker thread."""

    def __init__(
        self, root_dir: str | os.PathLike[str], *, durable: bool = False, create: bool = True
    ) -> None:
        self.root_dir = Path(root_dir)  # made absolute when the store opens
        self.durable = durable
        self.create = create
        self._lock_file: _locks.LockFile | None = None
        self._root: Directory | None = None
        self._used = UsedLogs()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {str(self.root_dir)!r}>"

    # -- helpers --------------------------------------------------------------------------------

    @property
    def root(self) -> Directory:
        if self._root is None:
            raise StorageError(f"store under {str(self.root_dir)!r} is not open")
        return self._root

    @staticmethod
    def _names(key: str, attribute_name: str | None = None) -> tuple[str, str]:
        """The entry directory's name, and the record's name in it."""
        record = "" if attribute_name is None else _naming.encode_name(attribute_name)
        return _naming.encode_name(key), record + RECORD_SUFFIX

    def _entry(self, key: str) -> Directory | None:
        """The entry directory of `key` for writing, or None; a planted link or file in its
        place refuses the write (`delete` or `verify --repair` removes it)."""
        entry, _ = self._names(key)
        try:
            return self.root.subdirectory(entry)
        except FileNotFoundError:
            return None
        except UnsafePath as error:
            raise StorageError(f"store under {str(self.root_dir)!r}: {_planted(error)}") from None

    # -- opening and closing --------------------------------------------------------------------

    @_storage_errors
    def blocking_open(self) -> None:
        root = self.root_dir = self.root_dir.absolute()  # here: getcwd is a system call
        if root.exists() and not root.is_dir():
            raise ConfigurationError(f"root_dir {str(root)!r} exists and is not a directory")
        if not self.create and not (root / MARKER).is_file():
            what = "does not exist" if not root.exists() else f"has no {MARKER} marker"
            raise ConfigurationError(f"no store at {str(root)!r}: the directory {what}")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):  # a parent is a file
            raise ConfigurationError(
                f"root_dir {str(root)!r} cannot be created: a parent is not a directory"
            ) from None
        directory = Directory.open(str(root))
        try:
            self._check_marker(directory)
        except BaseException:
            directory.close()
            raise
        if self._root is not None:
            self._root.close()
        self._root = directory
        weakref.finalize(self, directory.close).atexit = False  # dropped unclosed: let go
        self._make_lock_file()
        if self.create:  # tools that only look leave even a dead writer's batch alone
            with contextlib.suppress(OSError):  # read-only storage reads on
                self._recover_batches()

    def _check_marker(self, root: Directory) -> None:
        where = os.path.join(root.path, MARKER)
        try:
            data = root.read(MARKER)
        except UnsafePath as error:
            raise ConfigurationError(f"{where!r} is not an adatastore marker: {error}") from None
        if data is None:
            content = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION}).encode()
            root.atomic_write(MARKER, [content], durable=self.durable)
            return
        try:
            found = json.loads(bytes(data[:_MAX_JSON]))
        except (ValueError, RecursionError):
            raise ConfigurationError(f"{where!r} is not an adatastore marker") from None
        if not isinstance(found, dict) or found.get("format") != FORMAT_NAME:
            raise ConfigurationError(f"{where!r} is not an adatastore marker")
        if found.get("version") != FORMAT_VERSION:
            raise ConfigurationError(
                f"{root.path!r} holds format version {found.get('version')!r}; "
                f"this adatastore reads version {FORMAT_VERSION}"
            )

    def _make_lock_file(self) -> None:
        if _locks.LockFile.supported() and self._lock_file is None:
            # opened at its first use: read-only storage can still be read
            self._lock_file = _locks.LockFile(self.root_dir / LOCK_FILE)
            # a store dropped unclosed lets its descriptor go when it is collected
            weakref.finalize(self, self._lock_file.close).atexit = False

    def blocking_close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
        if self._root is not None:
            self._root.close()
            self._root = None

    # -- writing --------------------------------------------------------------------------------

    @_storage_errors
    def blocking_write(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        """Write one record atomically, and the component's metadata if it is missing.

        Linearizable against a concurrent `delete` (which removes the metadata and the
        directory once no record is left): the metadata is checked again after the
        record is in place, and a directory removed under us is made again. A retry
        loop, not a lock: a delete never waits for a store, nor a store for a delete.
        """
        for attempt in itertools.count():
            try:
                self._write_once(key, attribute_name, record, component)
            except UnsafePath as error:  # planted where the record belongs: left unchanged
                entry = _naming.encode_name(key)
                relative = UnsafePath(f"{entry}/{error.relative}", error.what)
                raise StorageError(
                    f"store under {str(self.root_dir)!r}: {_planted(relative)}"
                ) from None
            except FileNotFoundError:
                # A concurrent delete removed the entry directory between our steps,
                # or root_dir itself is gone: try again, then report.
                if attempt >= _RETRIES or not self.root_dir.is_dir():
                    raise
            else:
                return

    def _write_once(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        entry_name, name = self._names(key, attribute_name)
        try:
            os.mkdir(entry_name, 0o777, dir_fd=self.root.fd)
            fresh = True
        except FileExistsError:
            fresh = False
        entry = self._entry(key)
        if entry is None:
            raise FileNotFoundError(errno.ENOENT, "deleted meanwhile", entry_name)
        meta = [component.to_json()]
        with entry:
            if fresh or not entry.exists(COMPONENT_FILE):
                entry.atomic_write(COMPONENT_FILE, meta, durable=self.durable, fresh=fresh)
            entry.atomic_write(name, record, durable=self.durable, fresh=fresh)
            if not entry.exists(COMPONENT_FILE):  # a delete took it after we checked
                entry.atomic_write(COMPONENT_FILE, meta, durable=self.durable)

    @_storage_errors
    def blocking_write_many(self, records: Sequence[RecordWrite]) -> None:
        """Write several records, all or nothing, also if this process dies.

        Every record (and its component's metadata) is written first into a staging
        directory ``.batches/<host>-<pid>-<random>/``: a failure there (a full disk)
        removes it, and nothing was stored. Then the plan is written there too and renamed
        to ``<staging>.json``: the commit point. Then the records move into place, each as a
        single store would. A writer that dies before the plan leaves a staging
        directory that the next open removes; one that dies after it leaves a plan that
        the next open carries out.
        """
        if len(records) == 1:
            self.blocking_write(*records[0])
            return
        name = f"{_HOST}-{os.getpid()}-{secrets.token_hex(8)}"
        with self.root.subdirectory(BATCH_DIR, create=True) as batches:
            staging = batches.subdirectory(name, create=True)
            try:
                with staging:
                    plan = []
                    for number, (key, attribute_name, record, component) in enumerate(records):
                        staging.write_new(f"{number}.rec", record, durable=self.durable)
                        staging.write_new(
                            f"{number}.json", [component.to_json()], durable=self.durable
                        )
                        plan.append(list(self._names(key, attribute_name)))
                    # written inside the staging directory, then renamed out: a writer
                    # killed before the rename leaves nothing outside what recovery removes
                    staging.write_new(_PLAN, [json.dumps(plan).encode()], durable=self.durable)
                    batches.move_in(staging, _PLAN, name + ".json")
                if self.durable:
                    batches.fsync()
            except BaseException:
                batches.unlink(name + ".json")
                _remove_tree(batches, name)
                raise
            self._carry_out(batches, name, plan)

    def _carry_out(self, batches: Directory, name: str, plan: list[list[str]]) -> None:
        """Move a committed batch's records into place (again, after a crash: idempotent)."""
        with batches.subdirectory(name) as staging:
            for number, (entry_name, record_name) in enumerate(plan):
                if not staging.exists(f"{number}.rec"):
                    continue  # moved before the crash
                meta = staging.read(f"{number}.json")
                if meta is None:
                    continue
                self._move_in(staging, f"{number}.rec", entry_name, record_name, bytes(meta))
        batches.unlink(name + ".json")
        _remove_tree(batches, name)

    def _move_in(
        self, staging: Directory, staged: str, entry_name: str, record_name: str, meta: bytes
    ) -> None:
        """Move a staged record into its entry, as `blocking_write` writes one."""
        for attempt in itertools.count():
            try:
                with self.root.subdirectory(entry_name, create=True) as entry:
                    if not entry.exists(COMPONENT_FILE):
                        entry.atomic_write(COMPONENT_FILE, [meta], durable=self.durable)
                    entry.move_in(staging, staged, record_name)
                    if not entry.exists(COMPONENT_FILE):
                        entry.atomic_write(COMPONENT_FILE, [meta], durable=self.durable)
                    if self.durable:
                        entry.fsync()
            except FileNotFoundError:
                if attempt >= _RETRIES or not self.root_dir.is_dir():
                    raise
            else:
                return

    def _recover_batches(self) -> None:
        """Finish or remove the batches of writers of this host that died."""
        try:
            batches = self.root.subdirectory(BATCH_DIR)
        except FileNotFoundError:
            return
        with batches:
            for name in sorted(batches.names()):
                writer, _, _ = name.removesuffix(".json").rpartition("-")
                host, _, pid = writer.rpartition("-")
                if host != _HOST or not pid.isdigit() or _fsio.process_alive(int(pid)):
                    continue
                if name.endswith(".json"):
                    plan = _read_plan(batches, name)
                    if plan is None:
                        batches.unlink(name)
                    else:
                        self._carry_out(batches, name.removesuffix(".json"), plan)
                elif not batches.exists(name + ".json"):
                    _remove_tree(batches, name)  # died before its commit point

    # -- reading --------------------------------------------------------------------------------

    @_storage_errors
    def blocking_read(
        self, key: str, attribute_name: str, mode: MapMode | None = None
    ) -> Buffer | None:
        entry, name = self._names(key, attribute_name)
        try:
            return self.root.read(f"{entry}/{name}", mode)
        except UnsafePath as error:
            raise CorruptEntryError(key, attribute_name, _planted(error)) from None

    def blocking_read_many_mapped(
        self, pairs: Sequence[tuple[str, str]], mode: MapMode
    ) -> list[Buffer | None]:
        return [self.blocking_read(key, name, mode) for key, name in pairs]

    blocking_read_mapped = blocking_read

    @_storage_errors
    def blocking_read_head(self, key: str, attribute_name: str, size: int) -> Buffer | None:
        entry, name = self._names(key, attribute_name)
        try:
            return self.root.read_head(f"{entry}/{name}", size)
        except UnsafePath as error:
            raise CorruptEntryError(key, attribute_name, _planted(error)) from None

    @_storage_errors
    def blocking_contains(self, key: str, attribute_name: str) -> bool:
        """Whether anything is stored there (a damaged or planted record counts: `retrieve`
        then raises `CorruptEntryError`, and `contains` agrees that something is there)."""
        entry_name, name = self._names(key, attribute_name)
        try:
            entry = self.root.subdirectory(entry_name)
        except FileNotFoundError:
            return False
        except UnsafePath:
            return True
        with entry:
            return entry.exists(name)

    # -- deleting -------------------------------------------------------------------------------

    @_storage_errors
    def blocking_delete(self, key: str, attribute_name: str | None) -> int:
        """Delete one record (or all); remove the entry once no record is left.

        A store racing this delete may add a record at any step: the metadata is removed
        only when no record is seen, and put back if a record shows up before the
        directory is gone (see `blocking_write`). A link planted where the entry should be is
        removed itself (never what it points to).
        """
        entry_name, name = self._names(key, attribute_name)
        try:
            entry = self.root.subdirectory(entry_name)
        except FileNotFoundError:
            return 0
        except UnsafePath:
            self.root.unlink(entry_name)
            return 0
        with entry:
            saved = _saved_meta(entry)
            doomed = (
                [name]
                if attribute_name is not None
                else [n for n in entry.names() if n.endswith(RECORD_SUFFIX)]
            )
            deleted = sum(_remove(entry, item) for item in doomed)
            self._remove_if_empty(entry, saved)
        return deleted

    @_storage_errors
    def blocking_delete_listed(self, entries: Sequence[Entry]) -> list[Entry]:
        return [listed for listed in entries if self._delete_if_unchanged(listed)]

    def _delete_if_unchanged(self, listed: Entry) -> bool:
        """Delete the record of `listed` if it is still that file (`same_record`, its
        inode held open throughout). A store may replace it between that check and the
        rename that takes it away: the rename then took the new record, which is linked
        back at once (unless a newer one has arrived since) and the entry kept."""
        entry_name, name = self._names(listed.key, listed.attribute_name)
        try:
            entry = self.root.subdirectory(entry_name)
        except (FileNotFoundError, UnsafePath):
            return False
        with entry:
            try:
                fd = entry.open_file(name)
            except FileNotFoundError:
                return False
            except UnsafePath:  # planted where the record belongs: damage, whatever is listed
                return self._remove_planted_record(entry, name)
            try:
                held = os.fstat(fd)
                if not same_record(listed, _record_entry(_ANY, name, held, os.pread(fd, 4096, 0))):
                    return False
                aside = f"{_fsio.TEMP_PREFIX}{secrets.token_hex(8)}"
                os.rename(name, aside, src_dir_fd=entry.fd, dst_dir_fd=entry.fd)
                moved = os.stat(aside, dir_fd=entry.fd, follow_symlinks=False)
                if (moved.st_dev, moved.st_ino) != (held.st_dev, held.st_ino):
                    with contextlib.suppress(FileExistsError):  # a newer one came: keep it
                        os.link(aside, name, src_dir_fd=entry.fd, dst_dir_fd=entry.fd)
                    entry.unlink(aside)
                    return False
                entry.unlink(aside)
            finally:
                os.close(fd)
            self._remove_if_empty(entry, _saved_meta(entry))
        return True

    def _remove_planted_record(self, entry: Directory, name: str) -> bool:
        """Remove what was planted in a record's place: a link or special file itself (set
        aside first and looked at again, so a record stored there meanwhile is put back),
        an empty directory; a directory with something in it is reported and left."""
        if entry.kind(name) == "a directory":
            try:
                entry.rmdir(name)
            except FileNotFoundError:
                return False
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                logger.warning(
                    "%s is a directory planted where a record belongs, and not empty: "
                    "left alone; remove it by hand",
                    os.path.join(entry.path, name),
                )
                return False
        else:
            aside = f"{_fsio.TEMP_PREFIX}{secrets.token_hex(8)}"
            try:
                os.rename(name, aside, src_dir_fd=entry.fd, dst_dir_fd=entry.fd)
            except FileNotFoundError:
                return False
            if entry.kind(aside) == "a regular file":  # a store's record arrived meanwhile
                with contextlib.suppress(FileExistsError):
                    os.link(aside, name, src_dir_fd=entry.fd, dst_dir_fd=entry.fd)
                entry.unlink(aside)
                return False
            entry.unlink(aside)
        self._remove_if_empty(entry, _saved_meta(entry))
        return True

    def _remove_if_empty(self, entry: Directory, saved_meta: bytes | None = None) -> None:
        """Remove the entry directory once no record is left in it."""
        if _records_in(entry):
            return
        entry.unlink(COMPONENT_FILE)
        entry_name = os.path.basename(entry.path)
        try:
            self.root.rmdir(entry_name)
        except FileNotFoundError:
            return
        except OSError:  # not empty: a store got there first
            if saved_meta is not None and _records_in(entry) and not entry.exists(COMPONENT_FILE):
                with contextlib.suppress(FileNotFoundError):
                    entry.atomic_write(COMPONENT_FILE, [saved_meta], durable=self.durable)

    # -- listing --------------------------------------------------------------------------------

    def _entries(self) -> list[str]:
        """The names of the entry directories (real directories, not links)."""
        return [
            item.name
            for item in self.root.scan()
            if not item.name.startswith(".") and item.is_dir(follow_symlinks=False)
        ]

    @_storage_errors
    def blocking_entries(self) -> list[Entry]:
        entries: list[Entry] = []
        for name in self._entries():
            entries.extend(self._list_entry(name))
        return entries

    def _component(self, entry: Directory) -> ComponentRecord | None:
        """The entry's component record; None when it is not there (not ours, or being
        written or deleted); a placeholder when it is damaged (verify reports it)."""
        try:
            return ComponentRecord.from_json(_component_bytes(entry))
        except (UnsafePath, ValueError):  # planted or damaged: listed with no type
            return ComponentRecord(_decode_or(os.path.basename(entry.path)), "", "", None, ())
        except OSError:
            # Not there, not an entry of ours (root_dir may be shared, e.g. /tmp, with
            # directories we cannot read), or one being created or deleted right now.
            return None

    def _list_entry(self, entry_name: str) -> list[Entry]:
        try:
            entry = self.root.subdirectory(entry_name)
        except OSError:
            return []
        with entry:
            component = self._component(entry)
            if component is None:
                return []
            entries: list[Entry] = []
            found = []
            try:
                for file in entry.scan():  # stat while the directory is open
                    if file.name.endswith(RECORD_SUFFIX) and not file.name.startswith("."):
                        with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                            found.append((file.name, file.stat(follow_symlinks=False)))
            except OSError:
                return entries
            for file_name, stat in found:
                try:
                    head = entry.read_head(file_name, 4096)
                except OSError:  # a link or special file: verify reports it
                    head = b""
                if head is None:
                    continue  # deleted meanwhile
                entries.append(_record_entry(component, file_name, stat, head))
        return entries

    # -- read times, for limits (see `_used_logs`) -----------------------------------------------

    @_storage_errors
    def blocking_touch_many(self, used: Sequence[Used]) -> None:
        self._used.append(self.root, used)

    @_storage_errors
    def blocking_last_used(self) -> dict[tuple[str, str], float]:
        used, logs = self._used.read(self.root)
        kept = {pair: when for pair, when in used.items() if self.blocking_contains(*pair)}
        self._used.compact(self.root, kept, logs, len(used))
        return kept

    @_storage_errors
    def blocking_components(self, full_type: str | None) -> list[ComponentRecord]:
        records = []
        for name in self._entries():
            try:
                with self.root.subdirectory(name) as entry:
                    record = ComponentRecord.from_json(_component_bytes(entry))
            except (OSError, ValueError):
                continue  # not ours, being written, or damaged (verify reports it)
            if full_type is None or record.full_type == full_type:
                records.append(record)
        return records

    @_storage_errors
    def blocking_planted(self) -> list[DamagedEntry]:
        """Links, FIFOs and the like where entry directories, metadata or the lock file
        belong (records are listed, and their reads report them)."""
        found = []
        for item in self.root.scan():
            name = item.name
            if name == LOCK_FILE or (
                not name.startswith(".") and not item.is_dir(follow_symlinks=False)
            ):
                kind = self.root.kind(name)
                if kind is not None and kind != "a regular file":
                    found.append(DamagedEntry(_decode_or(name), "*", f"{name!r} is {kind}", name))
                continue
            if name.startswith("."):
                continue
            with contextlib.suppress(OSError), self.root.subdirectory(name) as entry:
                kind = entry.kind(COMPONENT_FILE)
                relative = f"{name}/{COMPONENT_FILE}"
                if kind is not None and kind != "a regular file":
                    found.append(
                        DamagedEntry(_decode_or(name), "*", f"{relative!r} is {kind}", relative)
                    )
                elif kind is not None and (why := _damaged_component(entry)) is not None:
                    reason = damaged_component_reason(relative, why)
                    found.append(DamagedEntry(_decode_or(name), "*", reason, relative))
        return found

    @_storage_errors
    def blocking_remove_planted(self, item: DamagedEntry) -> int:
        """Remove a planted link or special file itself (never what a link points to), or
        the entry whose component record is damaged (still damaged when looked at again:
        records without a record of their component cannot be listed, limited or
        explained; the entry is a cache, computed again at its next use)."""
        if item.path is None:
            return 0
        parent, _, name = item.path.rpartition("/")
        if not parent:
            return int(self.root.unlink(name))
        with self.root.subdirectory(parent) as entry:
            if entry.kind(name) != "a regular file":
                return int(entry.unlink(name))
            if name != COMPONENT_FILE or _damaged_component(entry) is None:
                return 0
            entry.unlink(COMPONENT_FILE)
            for record in [n for n in entry.names() if n.endswith(RECORD_SUFFIX)]:
                _remove(entry, record)
        with contextlib.suppress(OSError):
            self.root.rmdir(parent)
        return 1

    # -- locks and clean-up ---------------------------------------------------------------------

    def lock(
        self, key: str, attribute_name: str, timeout: float | None
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        if self._lock_file is not None:
            return self._lock_file.hold(key, attribute_name, timeout)
        lock = _locks.FileLock(self.root_dir / LOCK_DIR / (_locks.lock_name(key, attribute_name)))
        return lock.hold(timeout)

    @_storage_errors
    def spec(self) -> BackendSpec:
        arguments = {"root_dir": str(self.root_dir), "durable": self.durable, "create": False}
        return BackendSpec(FilesBackend, arguments, f"file://{self.root_dir}")

    def blocking_cleanup(self, older_than: float) -> int:
        """Remove stale temp files, then entry directories left without records."""
        now = time.time()
        removed = _remove_stale_temps(self.root, older_than, now)
        for name in self._entries():
            try:
                entry = self.root.subdirectory(name)
            except OSError:
                continue
            with entry:
                if not entry.exists(COMPONENT_FILE):
                    continue  # not one of ours
                removed += _remove_stale_temps(entry, older_than, now)
                try:
                    meta = os.stat(COMPONENT_FILE, dir_fd=entry.fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if now - meta.st_mtime > older_than and not _records_in(entry):
                    self._remove_if_empty(entry)
                    removed += 1
        return removed


def _planted(error: UnsafePath) -> str:
    removes = (
        "removes it if it is empty"
        if error.what == "a directory"
        else "removes it (the link, not its target)"
    )
    return (
        f"{error.relative!r} is {error.what}, not a record (planted, or damage): never "
        f"followed or read; 'adatastore verify --repair' {removes}"
    )


def _component_bytes(entry: Directory) -> Buffer:
    """The entry's component record file, read only when it is a regular file of at most
    `_MAX_JSON` bytes (`ValueError` when larger; `OSError`s as they come)."""
    fd = entry.open_file(COMPONENT_FILE)
    try:
        if os.fstat(fd).st_size > _MAX_JSON:
            raise ValueError("too large to be a component record")
        return _fsio.read_fd(fd)
    finally:
        os.close(fd)


def _damaged_component(entry: Directory) -> str | None:
    """Why the entry's component record does not parse, or None when it does (or is not
    there, or is not a regular file: reported as such)."""
    try:
        ComponentRecord.from_json(_component_bytes(entry))
    except OSError:
        return None
    except ValueError as error:
        return str(error)
    return None


def _saved_meta(entry: Directory) -> bytes | None:
    """The entry's component record as it is, to put back if a store races a delete."""
    try:
        meta = entry.read(COMPONENT_FILE)
    except UnsafePath:
        return None
    return None if meta is None else bytes(meta)


def _remove_stale_temps(directory: Directory, older_than: float, now: float) -> int:
    removed = 0
    for item in directory.scan():
        if not item.name.startswith(_fsio.TEMP_PREFIX):
            continue
        with contextlib.suppress(FileNotFoundError):
            if now - item.stat(follow_symlinks=False).st_mtime > older_than:
                removed += directory.unlink(item.name)
    return removed


def _remove(directory: Directory, name: str) -> bool:
    """Remove `name`: a file or link itself, or (planted where a file belongs) a
    directory and everything in it, never following a link."""
    try:
        return directory.unlink(name)
    except IsADirectoryError:
        _remove_tree(directory, name)
        return True


def _remove_tree(parent: Directory, name: str) -> None:
    """Remove the directory `name` and everything in it (no links followed)."""
    try:
        directory = parent.subdirectory(name)
    except (FileNotFoundError, UnsafePath):
        with contextlib.suppress(OSError):
            parent.unlink(name)
        return
    with directory:
        for item in directory.names():
            with contextlib.suppress(OSError):
                _remove(directory, item)
    with contextlib.suppress(OSError):
        parent.rmdir(name)


def _read_plan(batches: Directory, name: str) -> list[list[str]] | None:
    """A batch's plan, if it is one we wrote: pairs of plain names, nothing else."""
    try:
        data = batches.read(name)
        if data is None:
            return None
        plan = json.loads(bytes(data[:_MAX_JSON]))
    except (OSError, ValueError, RecursionError):
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
    return (
        bool(name)
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and not name.startswith(".")
    )


def _records_in(entry: Directory) -> bool:
    try:
        return any(name.endswith(RECORD_SUFFIX) for name in entry.names())
    except FileNotFoundError:
        return False


def _decode_or(encoded: str) -> str:
    try:
        return _naming.decode_name(encoded)
    except ValueError:
        return encoded


def _record_entry(
    component: ComponentRecord, file_name: str, stat: os.stat_result, head: bytes
) -> Entry:
    """The listing of one record file, from its `stat` and first 4 KiB: its attribute
    name (decoded, or from its header when the name was shortened); when it was first
    stored (its provenance: a copy or `cp` keeps it; the file's mtime only for records
    that do not say); its inode as its generation (every write is a new file)."""
    encoded = file_name[: -len(RECORD_SUFFIX)]
    name = _decode_or(encoded)
    if _naming.is_shortened(encoded):
        try:
            header, _ = _record.read_header(head)
            name = header.attribute_name
        except _record.DamagedRecord:
            name = encoded
    seconds = _record.stored_at([head])
    return Entry(
        key=component.key,
        attribute_name=name,
        full_type=component.full_type,
        version=component.version,
        size=stat.st_size,
        stored_at=datetime.fromtimestamp(stat.st_mtime if seconds is None else seconds, UTC),
        generation=str(stat.st_ino),
    )


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


class AsyncShelveDataStore(AsyncDataStore):
    """Entries as files under `root_dir` (created if missing); safe across processes.

    `durable=True` fsyncs every record and its directory before `store` returns, so
    entries survive a power cut, at about 0.4 ms per store here. Without it (the default)
    an entry survives any crash of the process, and a power cut can lose the newest ones
    (a lost record is a miss; a damaged one raises `CorruptEntryError`).
    """

    backend: FilesBackend

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        *,
        durable: bool = False,
        create: bool = True,
        **options: Unpack[StoreOptions],
    ) -> None:
        """`create=False` opens only an existing store (tools that look, never make):
        a missing or foreign `root_dir` is a `ConfigurationError` and nothing is created."""
        super().__init__(
            FilesBackend(root_dir, durable=durable, create=create),
            key_generator=key_generator,
            serializer=serializer,
            **options,
        )

    @property
    def root_dir(self) -> Path:
        """The directory the store lives in (absolute once the store is open)."""
        return self.backend.root_dir

    @property
    def durable(self) -> bool:
        """Whether every store is fsynced before it returns."""
        return self.backend.durable

    def __repr__(self) -> str:
        state = " closed" if self.lifecycle.closed else ""
        return f"<{type(self).__name__} {str(self.root_dir)!r}{state}>"


class ShelveDataStore(SyncDataStore[AsyncShelveDataStore]):
    """Blocking files store under `root_dir`: the original module's ``ShelveDataStore``.

    See `AsyncShelveDataStore` for the layout and the `durable` option.
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        *,
        durable: bool = False,
        create: bool = True,
        **options: Unpack[StoreOptions],
    ) -> None:
        self._root_dir = os.fspath(root_dir)
        """`root_dir` as given: the original module's attribute, which its scripts read."""
        super().__init__(
            AsyncShelveDataStore(
                root_dir,
                key_generator,
                serializer,
                durable=durable,
                create=create,
                **options,
            )
        )

    @property
    def root_dir(self) -> str:
        """The directory the store lives in (absolute)."""
        return str(self.async_store.root_dir)
