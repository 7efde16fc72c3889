"""`FilesBackend`: the files engine (see `adatastore.backends.files` for the layout).

Every method is a blocking call on a directory descriptor of ``root_dir`` (`Directory`),
translated to `StorageError` on an `OSError`; `ThreadedBackend` runs them in a worker
thread for the async path. Batches live in `_batches`, deletes in `_deleting`, the names
and files of the format in `_format`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import json
import os
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from ..._storage import locks as _locks
from ..._storage import naming as _naming
from ..._storage.beneath import Directory, UnsafePath
from ...backend import BackendSpec, MapMode, RecordWrite, ThreadedBackend, Used
from ...errors import ConfigurationError, CorruptEntryError, StorageError
from ...records import ComponentRecord, DamagedEntry, Entry, damaged_component_reason
from ...serializers import Buffer
from .._used_logs import UsedLogs
from ._batches import recover_batches, write_batch
from ._deleting import delete_if_unchanged, remove_if_empty
from ._format import (
    COMPONENT_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    LOCK_DIR,
    LOCK_FILE,
    MARKER,
    MAX_JSON,
    RECORD_SUFFIX,
    RETRIES,
    component_bytes,
    damaged_component,
    decode_or,
    names,
    planted,
    record_entry,
    records_in,
    remove,
    remove_stale_temps,
    saved_meta,
    storage_error,
)

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
            raise storage_error(error, self.root_dir) from error

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

    def _entry(self, key: str) -> Directory | None:
        """The entry directory of `key` for writing, or None; a planted link or file in its
        place refuses the write (`delete` or `verify --repair` removes it)."""
        entry, _ = names(key)
        try:
            return self.root.subdirectory(entry)
        except FileNotFoundError:
            return None
        except UnsafePath as error:
            raise StorageError(f"store under {str(self.root_dir)!r}: {planted(error)}") from None

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
                recover_batches(self.root, self.durable)

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
            found = json.loads(bytes(data[:MAX_JSON]))
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
                    f"store under {str(self.root_dir)!r}: {planted(relative)}"
                ) from None
            except FileNotFoundError:
                # A concurrent delete removed the entry directory between our steps,
                # or root_dir itself is gone: try again, then report.
                if attempt >= RETRIES or not self.root_dir.is_dir():
                    raise
            else:
                return

    def _write_once(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        entry_name, name = names(key, attribute_name)
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
        """Write several records, all or nothing, also if this process dies (`_batches`)."""
        if len(records) == 1:
            self.blocking_write(*records[0])
        else:
            write_batch(self.root, self.durable, records)

    # -- reading --------------------------------------------------------------------------------

    @_storage_errors
    def blocking_read(
        self, key: str, attribute_name: str, mode: MapMode | None = None
    ) -> Buffer | None:
        entry, name = names(key, attribute_name)
        try:
            return self.root.read(f"{entry}/{name}", mode)
        except UnsafePath as error:
            raise CorruptEntryError(key, attribute_name, planted(error)) from None

    def blocking_read_many_mapped(
        self, pairs: Sequence[tuple[str, str]], mode: MapMode
    ) -> list[Buffer | None]:
        return [self.blocking_read(key, name, mode) for key, name in pairs]

    blocking_read_mapped = blocking_read

    @_storage_errors
    def blocking_read_head(self, key: str, attribute_name: str, size: int) -> Buffer | None:
        entry, name = names(key, attribute_name)
        try:
            return self.root.read_head(f"{entry}/{name}", size)
        except UnsafePath as error:
            raise CorruptEntryError(key, attribute_name, planted(error)) from None

    @_storage_errors
    def blocking_contains(self, key: str, attribute_name: str) -> bool:
        """Whether anything is stored there (a damaged or planted record counts: `retrieve`
        then raises `CorruptEntryError`, and `contains` agrees that something is there)."""
        entry_name, name = names(key, attribute_name)
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
        entry_name, name = names(key, attribute_name)
        try:
            entry = self.root.subdirectory(entry_name)
        except FileNotFoundError:
            return 0
        except UnsafePath:
            self.root.unlink(entry_name)
            return 0
        with entry:
            saved = saved_meta(entry)
            doomed = (
                [name]
                if attribute_name is not None
                else [n for n in entry.names() if n.endswith(RECORD_SUFFIX)]
            )
            deleted = sum(remove(entry, item) for item in doomed)
            remove_if_empty(self.root, entry, self.durable, saved)
        return deleted

    @_storage_errors
    def blocking_delete_listed(self, entries: Sequence[Entry]) -> list[Entry]:
        return [
            listed for listed in entries if delete_if_unchanged(self.root, self.durable, listed)
        ]

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
            return ComponentRecord.from_json(component_bytes(entry))
        except (UnsafePath, ValueError):  # planted or damaged: listed with no type
            return ComponentRecord(decode_or(os.path.basename(entry.path)), "", "", None, ())
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
                entries.append(record_entry(component, file_name, stat, head))
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
                    record = ComponentRecord.from_json(component_bytes(entry))
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
                    found.append(DamagedEntry(decode_or(name), "*", f"{name!r} is {kind}", name))
                continue
            if name.startswith("."):
                continue
            with contextlib.suppress(OSError), self.root.subdirectory(name) as entry:
                kind = entry.kind(COMPONENT_FILE)
                relative = f"{name}/{COMPONENT_FILE}"
                if kind is not None and kind != "a regular file":
                    found.append(
                        DamagedEntry(decode_or(name), "*", f"{relative!r} is {kind}", relative)
                    )
                elif kind is not None and (why := damaged_component(entry)) is not None:
                    reason = damaged_component_reason(relative, why)
                    found.append(DamagedEntry(decode_or(name), "*", reason, relative))
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
            if name != COMPONENT_FILE or damaged_component(entry) is None:
                return 0
            entry.unlink(COMPONENT_FILE)
            for record in [n for n in entry.names() if n.endswith(RECORD_SUFFIX)]:
                remove(entry, record)
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
        removed = remove_stale_temps(self.root, older_than, now)
        for name in self._entries():
            try:
                entry = self.root.subdirectory(name)
            except OSError:
                continue
            with entry:
                if not entry.exists(COMPONENT_FILE):
                    continue  # not one of ours
                removed += remove_stale_temps(entry, older_than, now)
                try:
                    meta = os.stat(COMPONENT_FILE, dir_fd=entry.fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if now - meta.st_mtime > older_than and not records_in(entry):
                    remove_if_empty(self.root, entry, self.durable)
                    removed += 1
        return removed
