"""The files back-end: a directory of entries, one sub-directory per component.

Layout under ``root_dir``::

    .adatastore                    marker: format name and version
    <encoded key>/component.json   the component's type, version, parameters, input keys
    <encoded key>/<encoded name>.rec   one record per attribute
    .lock                          the entries' cross-process locks (byte ranges)
    .batches/                      `store_many` staging and plans (see `_batches`)
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

from typing import TYPE_CHECKING, Any

from ._backend import FilesBackend
from ._format import FORMAT_NAME, FORMAT_VERSION

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "AsyncShelveDataStore",
    "FilesBackend",
    "ShelveDataStore",
]
if TYPE_CHECKING:
    from ..._stores.files import AsyncShelveDataStore, ShelveDataStore


def __getattr__(name: str) -> Any:
    """The named stores (AsyncShelveDataStore, ShelveDataStore) live above the facade, in
    ``adatastore._stores``; their import path here is served when asked for (PEP 562)."""
    if name in ("AsyncShelveDataStore", "ShelveDataStore"):
        from ..._stores import files

        return getattr(files, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
