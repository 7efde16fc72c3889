"""The files back-end's format on disk: the names of its files, the records and
component files an entry holds and how they are read and listed, what a planted path is
called in a message, and the removal of files and trees without following a link.

Plain functions over a `Directory`; the engine (`_backend`) and its batches and deletes
call them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from ..._codec import record as _record
from ..._storage import fsio as _fsio
from ..._storage import naming as _naming
from ..._storage.beneath import Directory, UnsafePath
from ...errors import StorageError
from ...records import ComponentRecord, Entry
from ...serializers import Buffer

FORMAT_NAME = "adatastore-files"
FORMAT_VERSION = 1
MARKER = ".adatastore"
COMPONENT_FILE = "component.json"
RECORD_SUFFIX = ".rec"
LOCK_DIR = ".locks"  # one flock file per entry, where OFD locks are missing
LOCK_FILE = ".lock"
BATCH_DIR = ".batches"  # store_many's staging directories and plans
PLAN = "plan.json"  # a batch's plan, written in its staging directory first
HOST = socket.gethostname().replace("-", "_") or "localhost"
RETRIES = 100  # a store racing deletes of the same entry tries again this often
MAX_JSON = 1 << 26  # a component.json or plan larger than this is not ours
ANY_COMPONENT = ComponentRecord(
    "", "", "", None, ()
)  # for facts of a record that name no component


def names(key: str, attribute_name: str | None = None) -> tuple[str, str]:
    """The entry directory's name, and the record's name in it."""
    record = "" if attribute_name is None else _naming.encode_name(attribute_name)
    return _naming.encode_name(key), record + RECORD_SUFFIX


def planted(error: UnsafePath) -> str:
    removes = (
        "removes it if it is empty"
        if error.what == "a directory"
        else "removes it (the link, not its target)"
    )
    return (
        f"{error.relative!r} is {error.what}, not a record (planted, or damage): never "
        f"followed or read; 'adatastore verify --repair' {removes}"
    )


def component_bytes(entry: Directory) -> Buffer:
    """The entry's component record file, read only when it is a regular file of at most
    `MAX_JSON` bytes (`ValueError` when larger; `OSError`s as they come)."""
    fd = entry.open_file(COMPONENT_FILE)
    try:
        if os.fstat(fd).st_size > MAX_JSON:
            raise ValueError("too large to be a component record")
        return _fsio.read_fd(fd)
    finally:
        os.close(fd)


def damaged_component(entry: Directory) -> str | None:
    """Why the entry's component record does not parse, or None when it does (or is not
    there, or is not a regular file: reported as such)."""
    try:
        ComponentRecord.from_json(component_bytes(entry))
    except OSError:
        return None
    except ValueError as error:
        return str(error)
    return None


def saved_meta(entry: Directory) -> bytes | None:
    """The entry's component record as it is, to put back if a store races a delete."""
    try:
        meta = entry.read(COMPONENT_FILE)
    except UnsafePath:
        return None
    return None if meta is None else bytes(meta)


def remove_stale_temps(directory: Directory, older_than: float, now: float) -> int:
    removed = 0
    for item in directory.scan():
        if not item.name.startswith(_fsio.TEMP_PREFIX):
            continue
        with contextlib.suppress(FileNotFoundError):
            if now - item.stat(follow_symlinks=False).st_mtime > older_than:
                removed += directory.unlink(item.name)
    return removed


def remove(directory: Directory, name: str) -> bool:
    """Remove `name`: a file or link itself, or (planted where a file belongs) a
    directory and everything in it, never following a link."""
    try:
        return directory.unlink(name)
    except IsADirectoryError:
        remove_tree(directory, name)
        return True


def remove_tree(parent: Directory, name: str) -> None:
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
                remove(directory, item)
    with contextlib.suppress(OSError):
        parent.rmdir(name)


def plain_name(name: str) -> bool:
    return (
        bool(name)
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and not name.startswith(".")
    )


def records_in(entry: Directory) -> bool:
    try:
        return any(name.endswith(RECORD_SUFFIX) for name in entry.names())
    except FileNotFoundError:
        return False


def decode_or(encoded: str) -> str:
    try:
        return _naming.decode_name(encoded)
    except ValueError:
        return encoded


def record_entry(
    component: ComponentRecord, file_name: str, stat: os.stat_result, head: bytes
) -> Entry:
    """The listing of one record file, from its `stat` and first 4 KiB: its attribute
    name (decoded, or from its header when the name was shortened); when it was first
    stored (its provenance: a copy or `cp` keeps it; the file's mtime only for records
    that do not say); its inode as its generation (every write is a new file)."""
    encoded = file_name[: -len(RECORD_SUFFIX)]
    name = decode_or(encoded)
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


def storage_error(error: OSError, root: Path) -> StorageError:
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
