"""Large replaced records removed off the caller's path, by one daemon thread per process.

Replacing a 100 MB record on the files back-end frees the old file's blocks in
``unlink``: 6.3 ms of a 27 ms store here (ext4 frees the extents before unlink returns).
After the atomic exchange the old contents sit under a temporary name that no reader
opens; when the new record is at least `LARGE` bytes, that file is handed to a thread
(with a duplicate of its directory's descriptor, so a rename or removal of the directory
meanwhile changes nothing). Smaller ones are removed inline, where a hand-off would cost
more than the unlink; deletes and SQLite's or Django's payload files are removed before
the call returns, as documented.

`drain` waits until the thread has removed everything handed to it: stores call it when
they close, and it runs at interpreter exit and when a `multiprocessing` worker ends
(which leaves by ``os._exit``, past ``atexit``). A forked child removes its files inline:
it may well leave by ``os._exit`` of its own, and its parent's pending work is not its
own. So a replaced file outlives its process only when the process is killed; it is then
a temporary file (``.tmp-*``), which ``cleanup()`` removes as it removes a killed
writer's.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing.util
import os
import queue
import threading

from . import _forks

__all__ = ["LARGE", "drain", "remove"]

LARGE = 8 << 20
"""Files this large (bytes) are removed by the thread."""


class _Reaper:
    def __init__(self, inline: bool = False) -> None:
        self.inline = inline
        self._queue: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()
        self._idle = threading.Condition(threading.Lock())
        self._pending = 0
        self._thread: threading.Thread | None = None

    def remove(self, dir_fd: int, name: str) -> None:
        if self.inline:
            os.unlink(name, dir_fd=dir_fd)
            return
        fd = os.dup(dir_fd)
        with self._idle:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="adatastore-reaper", daemon=True
                )
                self._thread.start()
                # a multiprocessing worker leaves by os._exit, past atexit; registered
                # now: a worker's bootstrap drops what its imports registered
                multiprocessing.util.Finalize(None, self.drain, (60.0,), exitpriority=0)
        self._queue.put((fd, name))

    def _serve(self) -> None:
        while True:
            fd, name = self._queue.get()
            try:
                with contextlib.suppress(OSError):  # gone already, or its directory
                    os.unlink(name, dir_fd=fd)
            finally:
                os.close(fd)
                with self._idle:
                    self._pending -= 1
                    if not self._pending:
                        self._idle.notify_all()

    def drain(self, timeout: float | None) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout)


_reaper = _Reaper()


def remove(dir_fd: int, name: str) -> None:
    """Remove `name` (relative to the directory `dir_fd`) soon, in the reaper's thread."""
    _reaper.remove(dir_fd, name)


def drain(timeout: float | None = 60.0) -> bool:
    """Wait until every file handed over has been removed; False on timeout."""
    return _reaper.drain(timeout)


def _new_in_child() -> None:
    global _reaper
    _reaper = _Reaper(inline=True)  # the parent's thread does not exist here, nor its work


_forks.on_fork(_new_in_child)
atexit.register(drain)
