"""The object-store back-end: records as objects in an S3-compatible bucket.

Layout under ``s3://<bucket>/<prefix>/``::

    .adatastore                          marker: format name and version
    e/<encoded key>/component.json       the component's type, version, parameters, inputs
    e/<encoded key>/<encoded name>.rec   one object per record
    l/<lock name>.lease                  single-flight leases (`adatastore._storage.leases`)
    u/<...>.log                          when entries were last read (`_used_logs`)

Every write of a record is one PUT (or one completed multipart upload), which S3 makes
visible whole or not at all: readers see the old record or the new one, never a mix,
even when the writer is killed. Reads of large records are ranged GETs issued
concurrently, each conditional on the first one's ETag, so a record replaced mid-read is
read again rather than torn. Names are encoded as the files back-end encodes them
(`adatastore._storage.naming`): nothing a user passes can reach outside the prefix.

The engine is `_backend`'s, its listing `_listing`'s, the requests
`adatastore.backends._bucket`'s. The client is botocore's (thread-safe), called from
worker threads: the back-end is a `ThreadedBackend`, so one code path serves asyncio,
trio and the blocking API (which calls it in the caller's thread). Measured against
obstore (the Rust ``object_store``, native asyncio) and aiobotocore on the same server
(``benchmarks/s3_clients.py``): obstore spends 3x less client CPU per small request, but
its tokio runtime hangs every forked child of a process that used it (fork is how
``multiprocessing`` starts workers on Linux before Python 3.14), it runs on asyncio
only, and it cannot list or abort multipart uploads (what `cleanup` needs); botocore in
threads costs the same CPU as aiobotocore and has none of those limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._backend import ENTRIES, FORMAT_NAME, FORMAT_VERSION, LEASES, MARKER, ObjectBackend

__all__ = [
    "ENTRIES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LEASES",
    "MARKER",
    "AsyncObjectDataStore",
    "ObjectBackend",
    "ObjectDataStore",
]
if TYPE_CHECKING:
    from ..._stores.objects import AsyncObjectDataStore, ObjectDataStore


def __getattr__(name: str) -> Any:
    """The named stores (AsyncObjectDataStore, ObjectDataStore) live above the facade, in
    ``adatastore._stores``; their import path here is served when asked for (PEP 562)."""
    if name in ("AsyncObjectDataStore", "ObjectDataStore"):
        from ..._stores import objects

        return getattr(objects, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
