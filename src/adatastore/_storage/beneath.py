"""Files under one directory, reached without following a link or opening a special file.

Anyone who can write to a shared store can plant a symbolic link where an entry directory
or a record should be (to make other users' processes write or delete files elsewhere),
or a FIFO (to hang their readers). So everything inside a store is resolved relative to a
descriptor of its directory, without following any symbolic link: in one ``openat2``
system call with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`` where the kernel has it (Linux
5.6+; +0.5 µs per open here, against +2.5 µs for opening each directory on the way), else
one directory at a time with ``O_NOFOLLOW``. Files are opened non-blocking and used only if
``fstat`` says they are regular. Whatever is found instead raises `UnsafePath`, which the
back-ends report as damage; `verify --repair` then removes the link or FIFO itself, never
what it points to.

The directory itself may be reached through links (users do that): only what is inside it
is distrusted.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import stat
import sys
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, Self

from ..serializers import Buffer
from . import fsio as _fsio
from .fsio import MapMode

__all__ = ["Directory", "UnsafePath", "describe_mode"]

_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW


class UnsafePath(OSError):
    """Something other than a regular file or a directory where one should be."""

    def __init__(self, relative: str, what: str) -> None:
        super().__init__(errno.ELOOP, f"{relative!r} is {what}")
        self.relative = relative
        self.what = what


def describe_mode(mode: int) -> str:
    """What a file of this mode is, in words."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_SYS_OPENAT2 = 437  # the same number on every Linux architecture
_RESOLVE = 0x02 | 0x04 | 0x08  # NO_MAGICLINKS | NO_SYMLINKS | BENEATH


def _openat2_function() -> Any:
    if sys.platform != "linux":
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syscall
    except (AttributeError, OSError):
        return None
    function.restype = ctypes.c_long
    return function


_syscall = _openat2_function()


def _open_beneath(directory: int, relative: str, flags: int, mode: int) -> int:
    """Open `relative` (names joined by "/") beneath `directory`, following no link."""
    global _syscall
    if _syscall is not None:
        how = _OpenHow(flags, mode if flags & os.O_CREAT else 0, _RESOLVE)
        fd = _syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(directory),
            ctypes.c_char_p(os.fsencode(relative)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EPERM, errno.E2BIG):
            raise OSError(code, os.strerror(code), relative)
        _syscall = None  # not in this kernel, or a seccomp filter: one directory at a time
    *parents, name = relative.split("/")
    current = directory
    try:
        for parent in parents:
            following = os.open(parent, _DIRECTORY, dir_fd=current)
            if current != directory:
                os.close(current)
            current = following
        return os.open(name, flags | os.O_NOFOLLOW, mode, dir_fd=current)
    finally:
        if current != directory:
            os.close(current)


def _unsafe(relative: str, error: OSError) -> UnsafePath | OSError:
    if error.errno == errno.ELOOP:
        return UnsafePath(relative, "a symbolic link, or under one")
    if error.errno == errno.EXDEV:
        return UnsafePath(relative, "a path leading outside the store")
    if error.errno == errno.ENOTDIR:
        return UnsafePath(relative, "under something that is not a directory")
    if error.errno == errno.ENXIO:
        return UnsafePath(relative, "a socket")
    return error


class Directory:
    """A directory, held open; paths inside it are relative and never follow links."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def open(cls, path: str) -> Directory:
        """Open a store's own directory (links on the way to it are followed)."""
        return cls(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), path)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        # No module globals here (contextlib, say): at interpreter exit they may be gone
        # already, and a store kept open to the end (a worker's) is finalized then.
        try:  # noqa: SIM105 - contextlib may be gone at exit
            self.close()
        except Exception:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Directory {self.path!r}>"

    # -- opening ---------------------------------------------------------------------------------

    def open_file(self, relative: str, flags: int = _READ, mode: int = 0o666) -> int:
        """A descriptor of the regular file `relative` (FileNotFoundError if missing)."""
        try:
            fd = _open_beneath(self.fd, relative, flags, mode)
        except OSError as error:
            raise _unsafe(relative, error) from None
        try:
            found = os.fstat(fd).st_mode
        except BaseException:
            os.close(fd)
            raise
        if not stat.S_ISREG(found):
            os.close(fd)
            raise UnsafePath(relative, describe_mode(found))
        return fd

    def subdirectory(self, name: str, *, create: bool = False) -> Directory:
        """The directory `name` (one name) inside this one; made first with `create`."""
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=self.fd)
        try:
            fd = os.open(name, _DIRECTORY, dir_fd=self.fd)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise UnsafePath(name, "a symbolic link") from None
            if error.errno == errno.ENOTDIR:
                raise UnsafePath(name, self.kind(name) or "not a directory") from None
            raise
        return Directory(fd, os.path.join(self.path, name))

    # -- reading ---------------------------------------------------------------------------------

    def read(self, relative: str, mapped: MapMode | None = None) -> memoryview | None:
        """The whole regular file `relative`, or None if there is none; a map of it with
        `mapped` (``"r"`` read-only, ``"c"`` copy-on-write: see `_fsio.map_fd`)."""
        try:
            fd = self.open_file(relative)
        except FileNotFoundError:
            return None
        try:
            return _fsio.read_fd(fd) if mapped is None else _fsio.map_fd(fd, mapped == "c")
        finally:
            os.close(fd)

    def read_head(self, relative: str, size: int) -> bytes | None:
        """The first `size` bytes of `relative` (fewer when shorter), or None."""
        try:
            fd = self.open_file(relative)
        except FileNotFoundError:
            return None
        try:
            return os.read(fd, size)
        finally:
            os.close(fd)

    def kind(self, name: str) -> str | None:
        """What `name` (one name) is here, in words, or None when there is nothing."""
        try:
            mode = os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return None
        if stat.S_ISREG(mode):
            return "a regular file"
        return describe_mode(mode)

    def exists(self, name: str) -> bool:
        """Whether anything at all is at `name` (one name), a link included."""
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def _reading(self) -> int:
        # A descriptor of its own: os.scandir(fd) reads through a duplicate of `fd`, which
        # shares its position, so two threads listing at once would skip entries.
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.fd)

    def scan(self) -> Iterator[os.DirEntry[str]]:
        """The directory's entries (``is_dir``/``is_file`` with ``follow_symlinks=False``)."""
        fd = self._reading()
        try:
            with os.scandir(fd) as entries:
                yield from entries
        finally:
            os.close(fd)

    def names(self) -> list[str]:
        fd = self._reading()
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    # -- writing ---------------------------------------------------------------------------------

    def write_new(self, name: str, parts: Sequence[Buffer], *, durable: bool) -> None:
        """Create `name` (it must not exist) holding `parts`; removed again on any error."""
        _fsio.write_new(name, parts, durable=durable, dir_fd=self.fd)

    def atomic_write(
        self, name: str, parts: Sequence[Buffer], *, durable: bool, fresh: bool = False
    ) -> None:
        """Replace `name` by a file holding `parts`, atomically (see `_fsio.atomic_write`)."""
        temp = f"{_fsio.TEMP_PREFIX}{secrets.token_hex(8)}"
        self.write_new(temp, parts, durable=durable)
        try:
            if not fresh and _fsio.exchange(self.fd, temp, self.fd, name):
                # `temp` now holds the old contents. Removed here, not by a thread: 100 MB
                # freed in the background while the next large retrieve allocated made that
                # retrieve 0.4 instead of 5-7 GB/s in a fifth of the rounds (RESULTS.md)
                try:
                    os.unlink(temp, dir_fd=self.fd)
                except IsADirectoryError:  # a directory was planted there: swap it back
                    _fsio.exchange(self.fd, temp, self.fd, name)
                    raise UnsafePath(name, "a directory") from None
            else:
                os.replace(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=self.fd)
            raise
        if durable:
            os.fsync(self.fd)

    def move_in(self, source: Directory, name: str, target: str) -> None:
        """Move `name` of `source` here as `target`, replacing it (one rename)."""
        os.replace(name, target, src_dir_fd=source.fd, dst_dir_fd=self.fd)

    def unlink(self, name: str) -> bool:
        """Remove `name` (one name; a link itself, never its target); False if missing."""
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            return False
        return True

    def rmdir(self, name: str) -> None:
        os.rmdir(name, dir_fd=self.fd)

    def fsync(self) -> None:
        os.fsync(self.fd)
