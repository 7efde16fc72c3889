"""Run clean-up at interpreter exit, before non-daemon threads are joined.

`atexit` handlers run only after the interpreter has joined every non-daemon thread, so a
thread that waits for its clean-up (asgiref's and concurrent.futures' workers, a portal
thread) would hang the exit.
`threading._register_atexit` runs earlier; it is private but has existed since Python 3.9
(`concurrent.futures` relies on it).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable

__all__ = ["at_shutdown"]


def at_shutdown(function: Callable[[], object]) -> None:
    """Call `function` when the interpreter shuts down, before joining threads."""
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        register(function)
    else:  # pragma: no cover - every CPython >= 3.9 has it
        atexit.register(function)
