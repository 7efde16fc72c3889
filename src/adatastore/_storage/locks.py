"""Cross-process locks for single-flight computation.

`LockFile` keeps one file open per store and locks one byte of it per entry, at an offset
taken from the entry's hash, with Linux open-file-description locks (``F_OFD_SETLK``):
half a microsecond per attempt, no file per key, independent between store objects, and
released by the kernel when the holder dies, even by SIGKILL. Where OFD locks do not
exist, `FileLock` locks one small file per entry with ``flock`` instead. Acquisition polls
(non-blocking attempts with a growing pause), so waiting is cancellable.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import anyio.to_thread

from ..errors import StorageError
from .beneath import describe_mode

__all__ = ["FileLock", "LockFile", "lock_name", "polling_lock"]


def lock_name(key: str, attribute_name: str) -> str:
    """A short, file-name-safe name for the lock of one entry."""
    text = f"{key}\0{attribute_name}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(text).hexdigest()[:40]


@contextlib.asynccontextmanager
async def polling_lock(
    try_acquire: Callable[[], Awaitable[bool]],
    release: Callable[[], Awaitable[None]],
    patience: float | None,
) -> AsyncIterator[bool]:
    """Hold a lock taken by polling `try_acquire`; yields whether it was acquired.

    After `patience` seconds without it, yields False: the caller goes ahead unlocked
    (a cache prefers a duplicate computation to waiting forever on a stuck holder).
    """
    pause = 0.005
    acquired = await try_acquire()
    if not acquired and patience != 0:  # a cancel scope only when waiting: they cost
        with anyio.move_on_after(patience):
            while not acquired:
                await anyio.sleep(pause)
                pause = min(pause * 1.5, 0.25)
                acquired = await try_acquire()
    try:
        yield acquired
    finally:
        if acquired:
            with anyio.CancelScope(shield=True):
                await release()


class FileLock:
    """An exclusive lock on `path` shared by every process on the machine.

    With `inline`, the non-blocking attempts run on the event loop instead of in a worker
    thread (two system calls on a local file: far cheaper than two thread hand-offs). Use
    it only for directories that must be local anyway, such as SQLite's.
    """

    def __init__(self, path: Path, *, inline: bool = False) -> None:
        self.path = path
        self.inline = inline
        self._fd: int | None = None

    def _try(self) -> bool:
        try:
            fd = _open_lock_file(self.path)
        except StorageError as error:
            if not isinstance(error.__cause__, FileNotFoundError) or self.inline:
                raise  # inline: the caller made the directory beforehand
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as failure:
                raise _lock_error(self.path, failure) from failure
            fd = _open_lock_file(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    async def try_acquire(self) -> bool:
        if self.inline:
            return self._try()
        return await anyio.to_thread.run_sync(self._try)

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    async def release(self) -> None:
        if self.inline:
            self._release()
        else:
            await anyio.to_thread.run_sync(self._release)

    def hold(self, patience: float | None) -> contextlib.AbstractAsyncContextManager[bool]:
        """``async with lock.hold(patience) as acquired: ...``"""
        return polling_lock(self.try_acquire, self.release, patience)


def _open_lock_file(path: Path) -> int:
    """Open (or create) a lock file; a user who may not write the store cannot lock.

    `StorageError` at once: read as "another process holds the lock", a missing write
    permission would make `get_or_compute` wait for its whole lock timeout.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise StorageError(
                f"cannot take the lock: {str(path)!r} is a symbolic link (planted?); "
                "'adatastore verify --repair' removes it"
            ) from None
        raise _lock_error(path, error) from error
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise StorageError(
            f"cannot take the lock: {str(path)!r} is {describe_mode(mode)}, not a lock file "
            "(planted?); 'adatastore verify --repair' removes it"
        )
    return fd


def _lock_error(path: Path, error: OSError) -> StorageError:
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(
            f"cannot take the lock {str(path)!r}: the store is read-only for this user "
            f"({error.strerror}); reading works, computing and storing do not"
        )
    return StorageError(f"cannot take the lock {str(path)!r}: {error}")


_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", None)
_FLOCK = "hhqqi"  # struct flock on Linux: type, whence, start, len, pid


class LockFile:
    """Per-entry locks as byte ranges of one file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0

    @staticmethod
    def supported() -> bool:
        """Whether this system has open-file-description locks."""
        return _OFD_SETLK is not None

    def _descriptor(self) -> int:
        # A forked child must not share the parent's open file description (and so its
        # locks): it opens its own.
        if self._fd is None or self._pid != os.getpid():
            self._fd = _open_lock_file(self.path)
            self._pid = os.getpid()
        return self._fd

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and self._pid == os.getpid():
            os.close(fd)

    def _set(self, offset: int, kind: int) -> bool:
        assert _OFD_SETLK is not None
        request = struct.pack(_FLOCK, kind, os.SEEK_SET, offset, 1, 0)
        descriptor = self._descriptor()  # opened at the first attempt (one local open(2))
        try:
            fcntl.fcntl(descriptor, _OFD_SETLK, request)
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise StorageError(f"cannot lock {str(self.path)!r}: {error}") from error
        return True

    def hold(
        self, key: str, attribute_name: str, patience: float | None
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        """``async with lock_file.hold(key, name, patience) as acquired: ...``"""
        offset = int(lock_name(key, attribute_name)[:15], 16)  # 60 bits: no collisions

        async def try_acquire() -> bool:
            return self._set(offset, fcntl.F_WRLCK)

        async def release() -> None:
            self._set(offset, fcntl.F_UNLCK)

        return polling_lock(try_acquire, release, patience)
