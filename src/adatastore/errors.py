"""The exception hierarchy: every error the library raises on purpose is a `DataStoreError`.

Where a built-in exception type is the natural one for a caller to catch, the subclass also
derives from it (`UnhashableParameterError` is a `TypeError`, `InvalidNameError` a
`ValueError`), so ``except TypeError`` keeps working for code written against plain Python.
"""

from __future__ import annotations

__all__ = [
    "ComponentError",
    "ConfigurationError",
    "CorruptEntryError",
    "DataStoreError",
    "ExecutorError",
    "IntegrityError",
    "InvalidKeyError",
    "InvalidNameError",
    "NetworkFilesystemWarning",
    "SerializationError",
    "StaleCodeWarning",
    "StorageError",
    "StoreClosedError",
    "UnhashableParameterError",
    "UnreadableValueError",
    "WorkerStartupError",
]


class DataStoreError(Exception):
    """Base class of every error raised by adatastore."""


class ComponentError(DataStoreError):
    """An object is not a usable component: a missing attribute, a bad input, a cycle."""


class UnhashableParameterError(ComponentError, TypeError):
    """A parameter value has no canonical encoding, so it cannot be part of a key.

    `path` is the dotted path of the offending value inside the parameters
    (for example ``"network.weights[2]"``).
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"parameter {path!r}: {message}")


class InvalidNameError(DataStoreError, ValueError):
    """An attribute name is not acceptable (not a string, empty, too long, NUL, ...)."""


class InvalidKeyError(DataStoreError, TypeError):
    """A key generator returned something that is not a usable key."""


class SerializationError(DataStoreError):
    """A value could not be serialized, or stored bytes could not be deserialized."""


class UnreadableValueError(SerializationError):
    """A stored value could not be rebuilt: unpickling failed (its class was moved or
    removed, its module is missing) or the serializer refused the bytes.

    `get_or_compute`, `warm` and ``@cached`` recompute such entries (unless the store
    says ``on_bad_entry="raise"``); `retrieve` raises this. An entry written by another
    serializer is a plain `SerializationError`: the store is misconfigured, not the entry
    bad.
    """

    def __init__(self, key: str, attribute_name: str, reason: str) -> None:
        self.key = key
        self.attribute_name = attribute_name
        self.reason = reason
        super().__init__(f"entry {attribute_name!r} of component {key!r}: {reason}")


class ConfigurationError(DataStoreError):
    """A store was configured wrongly or used where it cannot run."""


class WorkerStartupError(ConfigurationError):
    """A worker process of ``warm(processes=True)`` could not start: importing the main
    script there raised (its exception is ``__cause__``, and named in the message). Worker
    processes import the script again, so code that must run only once — reading
    ``sys.argv``, calling `warm` — belongs under ``if __name__ == "__main__":``."""


class CorruptEntryError(DataStoreError):
    """A stored entry is damaged (truncated, bit-flipped, or not written by adatastore).

    The rest of the store is unaffected; delete or overwrite the entry to repair it.
    """

    def __init__(self, key: str, attribute_name: str, reason: str) -> None:
        self.key = key
        self.attribute_name = attribute_name
        self.reason = reason
        super().__init__(
            f"entry {attribute_name!r} of component {key!r} is corrupt: {reason}; "
            "delete it or store it again"
        )


class IntegrityError(DataStoreError):
    """A record's signature is missing or wrong: it was not written with our signing key.

    The record is never deserialized. Someone with write access to the storage changed it,
    or it was written by a store without (or with another) signing key.
    """

    def __init__(self, key: str, attribute_name: str, reason: str) -> None:
        self.key = key
        self.attribute_name = attribute_name
        self.reason = reason
        super().__init__(
            f"entry {attribute_name!r} of component {key!r} failed the signature check: "
            f"{reason}; it was not deserialized"
        )


class StorageError(DataStoreError):
    """The storage medium refused an operation (disk full, read-only, permissions, ...).

    The original `OSError` is chained as ``__cause__``.
    """


class ExecutorError(DataStoreError):
    """The executor of ``warm(executor=...)`` can take no more work (a process pool broken
    by a worker's death, a Dask cluster gone). What was stored stays stored: run `warm`
    again with a working executor and only the missing components are computed."""


class StoreClosedError(DataStoreError):
    """The store was used after it was closed."""


class NetworkFilesystemWarning(UserWarning):
    """A store's file lives on a network file system, where SQLite's locks are unreliable.

    Several machines (or even processes) writing one SQLite file over NFS or SMB can
    corrupt it. Share a cache between machines with the Django back-end on PostgreSQL.
    """


class StaleCodeWarning(UserWarning):
    """A stored entry was made by other code than the component's now, under the same
    version: the class's (or compute function's) source changed and `version` was not
    bumped. Issued once per component type per process; ``warn_stale_code=False`` on the
    store turns it off. `explain` says what changed."""
