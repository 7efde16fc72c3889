"""Every filesystem call of the files back-end goes through here (blocking; run in threads).

Keeping them in one small module makes the rules easy to check (atomic replace, temp files
removed on every error path, optional fsync) and lets tests inject I/O errors in one place.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import mmap
import os
import secrets
import signal
import stat
import sys
import time
from collections.abc import Sequence
from typing import Any, Literal

from ..serializers import Buffer

__all__ = [
    "NETWORK_FILESYSTEMS",
    "TEMP_PREFIX",
    "FileMap",
    "MapMode",
    "allocate",
    "atomic_write",
    "filesystem_type",
    "map_fd",
    "process_alive",
    "read_file",
    "remove_stale",
    "remove_unreferenced",
    "write_new",
]

TEMP_PREFIX = ".tmp-"
"""Temp files start with this; a name that does not is never a temp file."""

MapMode = Literal["r", "c"]
"""How a record file is mapped: ``"r"`` read-only, ``"c"`` copy-on-write."""

_CHUNK = 1 << 26  # bytes per read(2): large enough, and an int on every system
_MAP_FROM = 1 << 22  # files this large are copied from a map (under a lease)
_MAP_CHUNK = 1 << 28  # bytes copied between two checks of the lease
_F_SETLEASE = getattr(fcntl, "F_SETLEASE", None)
_F_GETLEASE = getattr(fcntl, "F_GETLEASE", 1025)
_F_SETSIG = 10  # Linux
_TOUCHED = 1 << 14  # bytes of a map read at once: a record's header, its in-band pickle
_WRITEV_PARTS = 64  # at most this many parts go in one writev (IOV_MAX is 1024)
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


def exchange(source_dir: int, source: str, target_dir: int, target: str) -> bool:
    """Swap `source` and an existing `target` atomically; False when that cannot be done.

    Replacing an existing file by rename makes ext4 flush the new file's data first
    (auto_da_alloc): 1.3 GB/s for 100 MB here, against 3.6 GB/s for an exchange. After
    the exchange `source` holds the old contents and is removed by the caller.
    """
    global _renameat2
    if _renameat2 is None:
        return False
    if _renameat2(
        source_dir, os.fsencode(source), target_dir, os.fsencode(target), _RENAME_EXCHANGE
    ):
        code = ctypes.get_errno()
        if code == errno.ENOENT:
            return False  # no file to exchange with: a plain rename will do
        if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            _renameat2 = None  # not supported by this kernel or file system
            return False
        raise OSError(code, os.strerror(code), target)
    return True


def _preallocate_function() -> Any:
    """libc's fallocate (Linux), which reserves a file's blocks before it is written."""
    try:
        function = ctypes.CDLL(None, use_errno=True).fallocate
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    function.restype = ctypes.c_int
    return function


_fallocate = _preallocate_function() if sys.platform == "linux" else None
_PREALLOCATE_FROM = 1 << 20  # new files this large get their blocks reserved first


def preallocate(fd: int, size: int) -> None:
    """Reserve `size` bytes of blocks for the new file `fd` before writing them.

    ext4 then writes into extents reserved at once instead of allocating as the page cache
    fills: a 100 MB ``os.write`` ran at 4.8 GB/s after ``fallocate`` against 1.5-3.7 GB/s
    without (np.save does the same, which is why it wrote 2-4x faster than our store).
    Best effort: a file system without it (EOPNOTSUPP) is simply written; never glibc's
    ``posix_fallocate`` fallback, which writes zeros first.
    """
    global _fallocate
    if _fallocate is None or size < _PREALLOCATE_FROM:
        return
    if _fallocate(fd, 0, 0, size):
        code = ctypes.get_errno()
        if code in (errno.EOPNOTSUPP, errno.ENOSYS):
            _fallocate = None  # not on this file system: do not ask again
        elif code == errno.ENOSPC:
            raise OSError(code, os.strerror(code))


def write_all(fd: int, parts: Sequence[Buffer]) -> None:
    """Write every byte of `parts` to a new file `fd`. Files of `_PREALLOCATE_FROM`
    bytes or more get their blocks reserved first (`preallocate`). One ``writev`` for a
    few parts (a small record is 3-5 parts: a system call each cost ~3 µs apiece here),
    then whatever a short write left, part by part."""
    views = [memoryview(part).cast("B") for part in parts]
    preallocate(fd, sum([view.nbytes for view in views]))
    if 1 < len(views) <= _WRITEV_PARTS:
        written = os.writev(fd, views)
        while views and written >= views[0].nbytes:
            written -= views.pop(0).nbytes
        if views:
            views[0] = views[0][written:]
    for view in views:
        while view:
            written = os.write(fd, view)
            view = view[written:]


def write_new(
    path: str, parts: Sequence[Buffer], *, durable: bool, dir_fd: int | None = None
) -> None:
    """Create `path` (it must not exist; relative to `dir_fd` if given) holding the
    concatenation of `parts`. On any error the file is removed again. With `durable` its
    data is fsynced."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o666, dir_fd=dir_fd)
    try:
        try:
            write_all(fd, parts)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path, dir_fd=dir_fd)
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
        if not fresh and exchange(_AT_FDCWD, temp, _AT_FDCWD, path):
            os.unlink(temp)  # now the old contents
        else:
            os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    if durable:
        fsync_directory(directory)


def read_fd(fd: int) -> memoryview:
    """The whole of an open regular file, in a fresh writable buffer.

    A map of a file that shrinks while it is copied (rewritten in place by ``cp`` or
    ``rsync --inplace``, truncated by another NFS client or an attacker) kills the process
    with SIGBUS, which nothing can catch; read(2) returns what is there, and the record's
    checks report the damage. But read(2) ran at 4.5-4.8 GB/s here against 8-8.5 GB/s for
    copying from a map (100 MB from the page cache; a 100 MB retrieve 4.4 against 8.4
    GB/s). So large files are copied from a map only while this process holds a read
    *lease* on them (Linux ``F_SETLEASE``): the kernel then holds back any other process
    that opens the file for writing or truncates it until the lease is let go (for at most
    ``lease-break-time``, 45 s; the copy checks its lease between 256 MB chunks and
    finishes with read(2) once a writer waits). Where no lease can be had (a file of
    another user, open for writing, NFS), read(2) it is.
    """
    size = os.fstat(fd).st_size
    filled = 0
    if size >= _MAP_FROM and _take_lease(fd):
        try:
            size = os.fstat(fd).st_size  # it may have shrunk before the lease
            buffer = allocate(size)
            filled = _copy_mapped(fd, buffer, size)
        finally:
            _let_go(fd)
    else:
        buffer = allocate(size)
    while filled < size:
        count = os.preadv(fd, [buffer[filled : filled + _CHUNK]], filled)
        if not count:
            return buffer[:filled]  # shorter than its size: the record check reports it
        filled += count
    return buffer


class FileMap(mmap.mmap):
    """A map of a record file (`map_fd`); told apart from the anonymous maps that other
    reads fill (those are digested on reads, a file's map is not)."""


def map_fd(fd: int, private: bool) -> memoryview:
    """A map of the whole of an open regular file: read-only, or copy-on-write (`private`:
    writable pages of this process's own, the file untouched).

    For ``retrieve(mmap=True)``: arrays rebuilt from it use the file's pages in the page
    cache, shared by every process mapping it, and nothing is copied. The map outlives the
    file's name (a replaced or deleted record keeps its inode while mapped: adatastore never
    rewrites or truncates a record file in place). A file truncated in place by another
    program while mapped makes a later access die of SIGBUS, as with `numpy.memmap`.
    """
    size = os.fstat(fd).st_size
    if not size:
        return memoryview(b"")  # mmap refuses empty files; the record check reports it
    access = mmap.ACCESS_COPY if private else mmap.ACCESS_READ
    view = memoryview(FileMap(fd, size, access=access))
    view[:_TOUCHED:4096].tobytes()  # the header's pages read here, not on an event loop
    return view


def _take_lease(fd: int) -> bool:
    """Take a read lease on `fd`; False where none can be had."""
    if _F_SETLEASE is None:
        return False
    try:
        # Lease breaks are announced by a signal, SIGIO by default, which would end the
        # process: SIGURG instead, whose default is to be ignored (the copy polls).
        fcntl.fcntl(fd, _F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_RDLCK)
    except OSError:
        return False
    return True


def _let_go(fd: int) -> None:
    assert _F_SETLEASE is not None
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_UNLCK)


def _copy_mapped(fd: int, buffer: memoryview, size: int) -> int:
    """Copy from a map of `fd` while the lease holds; return how much was copied."""
    if not size:
        return 0
    with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as source:
        for start in range(0, size, _MAP_CHUNK):
            if fcntl.fcntl(fd, _F_GETLEASE) != fcntl.F_RDLCK:
                return start  # a writer waits for us: the rest with read(2)
            end = min(start + _MAP_CHUNK, size)
            buffer[start:end] = source[start:end]
    return size


def open_regular(path: str) -> int | None:
    """A descriptor of the regular file `path` (its last name not a link), or None.

    For paths adatastore made itself from names it checked; raises `OSError` (ELOOP)
    for a link, a FIFO, a socket or a device there.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise OSError(errno.ELOOP, "not a regular file", path)
    return fd


def read_head(path: str, size: int) -> bytes | None:
    """The first `size` bytes of a file (fewer when it is shorter), or None if it is gone."""
    fd = open_regular(path)
    if fd is None:
        return None
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def read_file(path: str) -> memoryview | None:
    """Return the whole file in a fresh writable buffer, or None if it does not exist."""
    fd = open_regular(path)
    if fd is None:
        return None
    try:
        return read_fd(fd)
    finally:
        os.close(fd)


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
