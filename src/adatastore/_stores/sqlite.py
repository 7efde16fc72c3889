"""`AsyncSQLiteDataStore` and `SQLiteDataStore`: the SQLite engine under the facade."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Unpack

from .._core.options import StoreOptions
from ..backends.sqlite import SQLiteBackend
from ..keygenerators import KeyGenerator
from ..serializers import Serializer
from ..store import AsyncDataStore
from ..sync import SyncDataStore

__all__ = ["AsyncSQLiteDataStore", "SQLiteDataStore"]


class AsyncSQLiteDataStore(AsyncDataStore):
    """All entries in one SQLite file (created with its parent directories if missing).

    Safe for several tasks, threads, event loops and processes on one machine (WAL
    journal, a busy timeout, one-unit writes); runs on asyncio and trio. Not for network
    file systems: SQLite's locks are unreliable there; use the Django back-end on
    PostgreSQL to share a cache between machines. `durable=True` makes every store survive
    a power cut (``synchronous=FULL`` and fsynced payload files); by default a store
    survives any crash of the process.

    Close it with `aclose` or ``async with``; a store dropped unclosed is closed when it is
    garbage-collected (with a `ResourceWarning`), and never holds up the interpreter's exit.
    """

    backend: SQLiteBackend

    def __init__(
        self,
        path: str | os.PathLike[str],
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        *,
        durable: bool = False,
        busy_timeout: float = 60.0,
        create: bool = True,
        payloads: str | None = None,
        **options: Unpack[StoreOptions],
    ) -> None:
        """`create=False` opens only an existing store (tools that look, never make): a
        missing file is a `ConfigurationError`, and no file or directory is created.

        ``payloads="s3://bucket/prefix?endpoint=..."`` keeps the records of
        `FILE_THRESHOLD` bytes or more in a bucket instead of the directory beside the
        file (credentials from the AWS environment); the rows stay here."""
        super().__init__(
            SQLiteBackend(
                path, durable=durable, busy_timeout=busy_timeout, create=create, payloads=payloads
            ),
            key_generator=key_generator,
            serializer=serializer,
            **options,
        )

    @property
    def path(self) -> Path:
        """The database file (absolute once the store is open)."""
        return self.backend.path

    @property
    def payload_dir(self) -> Path:
        """Where records of `FILE_THRESHOLD` bytes or more go."""
        return self.backend.payload_dir

    @property
    def durable(self) -> bool:
        """Whether every store survives a power cut."""
        return self.backend.durable

    @property
    def busy_timeout(self) -> float:
        """Seconds a connection waits for another process's lock before failing."""
        return self.backend.busy_timeout

    def __repr__(self) -> str:
        state = " closed" if self._parts.lifecycle.closed else ""
        return f"<{type(self).__name__} {str(self.path)!r}{state}>"


class SQLiteDataStore(SyncDataStore[AsyncSQLiteDataStore]):
    """Blocking store in one SQLite file: the embedded default.

    See `AsyncSQLiteDataStore` for the options. Reads run in the calling thread (a pool of
    read-only connections), writes in the writer's thread; `close` (or the end of the
    interpreter) closes them.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        *,
        durable: bool = False,
        busy_timeout: float = 60.0,
        create: bool = True,
        payloads: str | None = None,
        **options: Unpack[StoreOptions],
    ) -> None:
        super().__init__(
            AsyncSQLiteDataStore(
                path,
                key_generator,
                serializer,
                durable=durable,
                busy_timeout=busy_timeout,
                create=create,
                payloads=payloads,
                **options,
            )
        )

    @property
    def path(self) -> str:
        """The database file (absolute)."""
        return str(self.async_store.path)
