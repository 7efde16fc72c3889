"""Every filesystem call of the files back-end goes through here (blocking; run in threads).

Keeping them in one small module makes the rules easy to check (atomic replace, temp files
removed on every error path, optional fsync) and lets tests inject I/O errors in one place.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import secrets
import sys
import time
from collections.abc import Sequence
from typing import Any

from .serializers import Buffer

__all__ = [
    "NETWORK_FILESYSTEMS",
    "TEMP_PREFIX",
    "allocate",
    "atomic_write",
    "filesystem_type",
    "process_alive",
    "read_file",
    "remove_stale",
    "remove_unreferenced",
    "write_new",
]

TEMP_PREFIX = ".tmp-"
"""Temp files start with this; a name that does not is never a temp file."""

_MAP_FROM = 1 << 22  # files this large are read by copying from a memory mapping
_NUMPY_FROM = 1 << 16  # buffers this large come from numpy.empty when numpy is loaded


def allocate(size: int) -> memoryview:
    """Return a writable, uninitialised-if-possible buffer of `size` bytes."""
    np = sys.modules.get("numpy")
    if np is not None and size >= _NUMPY_FROM:
        # np.empty does not zero-fill: reading into it runs at full speed.
        return memoryview(np.empty(size, dtype=np.uint8))
    return memoryview(bytearray(size))


def fsync_directory(path: str) -> None:
    """Make a rename in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange_function() -> Any:
    """libc's renameat2, where the C library has it (Linux, glibc >= 2.28)."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


_renameat2 = _exchange_function() if sys.platform == "linux" else None
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(temp: str, path: str) -> bool:
    """Swap `temp` and an existing `path` atomically; False when that cannot be done here.

    Replacing an existing file by rename makes ext4 flush the new file's data first
    (auto_da_alloc): 1.3 GB/s for 100 MB here, against 3.6 GB/s for an exchange. After
    the exchange `temp` holds the old contents and is removed by the caller.
    """
    global _renameat2
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(temp), _AT_FDCWD, os.fsencode(path), _RENAME_EXCHANGE):
        code = ctypes.get_errno()
        if code == errno.ENOENT:
            return False  # no file to exchange with: a plain rename will do
        if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            _renameat2 = None  # not supported by this kernel or file system
            return False
        raise OSError(code, os.strerror(code), path)
    return True


def write_new(path: str, parts: Sequence[Buffer], *, durable: bool) -> None:
    """Create `path` (it must not exist) holding the concatenation of `parts`.

    On any error the file is removed again. With `durable` its data is fsynced.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        try:
            for part in parts:
                view = memoryview(part).cast("B")
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def atomic_write(path: str, parts: Sequence[Buffer], *, durable: bool, fresh: bool = False) -> None:
    """Write the concatenation of `parts` to `path` atomically.

    The bytes go to a temp file in the same directory, which then takes the place of
    `path` (an atomic exchange where the system has one, else `os.replace`); a reader sees
    the old file or the new one. The temp file is removed on every path. With `durable`,
    the data and the rename are fsynced before returning. `fresh` says `path` is most
    likely new (its directory was just made): no exchange is tried.
    """
    directory = os.path.dirname(path)
    temp = os.path.join(directory, f"{TEMP_PREFIX}{secrets.token_hex(8)}")
    write_new(temp, parts, durable=durable)
    try:
        if not fresh and _exchange(temp, path):
            os.unlink(temp)  # now the old contents
        else:
            os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    if durable:
        fsync_directory(directory)


def read_head(path: str, size: int) -> bytes | None:
    """The first `size` bytes of a file (fewer when it is shorter), or None if it is gone."""
    try:
        with open(path, "rb", buffering=0) as stream:
            return stream.read(size)
    except FileNotFoundError:
        return None


def read_file(path: str) -> memoryview | None:
    """Return the whole file in a fresh writable buffer, or None if it does not exist."""
    try:
        stream = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    with stream:
        size = os.fstat(stream.fileno()).st_size
        buffer = allocate(size)
        if size >= _MAP_FROM:
            # Copying from a mapping of the page cache runs at 5.5-6 GB/s here, read(2)
            # at 2 GB/s (benchmarks/RESULTS.md). Our files are written once and renamed
            # into place, never truncated, so the mapping cannot shrink under us.
            with (
                mmap.mmap(stream.fileno(), size, access=mmap.ACCESS_READ) as mapped,
                memoryview(mapped) as source,
            ):
                buffer[:] = source
            return buffer
        filled = 0
        while filled < size:
            count = stream.readinto(buffer[filled:])
            if not count:
                return buffer[:filled]  # shorter than its size: the record check reports it
            filled += count
        return buffer


def process_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this host (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(paths: list[str], older_than: float, now: float) -> int:
    """Unlink the files among `paths` last modified more than `older_than` seconds ago."""
    removed = 0
    for path in paths:
        try:
            if now - os.stat(path).st_mtime > older_than:
                os.unlink(path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def remove_unreferenced(root: str, referenced: set[str], older_than: float) -> int:
    """Remove stale temp files under `root`, and files whose path relative to `root` is
    not in `referenced` (payload files no index row points to)."""
    stale = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            if name.startswith(TEMP_PREFIX) or os.path.relpath(path, root) not in referenced:
                stale.append(path)
    return remove_stale(stale, older_than, time.time())


NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb",
        "smb2",
        "smb3",
        "smbfs",
        "ncpfs",
        "afs",
        "9p",
        "sshfs",
        "fuse.sshfs",
        "ceph",
        "fuse.ceph",
        "glusterfs",
        "fuse.glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "davfs",
        "fuse.davfs2",
        "fuse.rclone",
    }
)
"""File system types whose locks SQLite cannot rely on."""

MOUNTS_FILE = "/proc/mounts"


def filesystem_type(path: str, mounts: str = MOUNTS_FILE) -> str | None:
    """The type of the file system holding `path` (Linux), or None when unknown."""
    try:
        with open(mounts, encoding="utf-8", errors="replace") as stream:
            table = stream.read().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in table:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].encode("latin-1", "replace").decode("unicode_escape")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, fields[2]
    return best_type
