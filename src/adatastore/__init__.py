"""adatastore: cache what long computations produce, keyed by the component that made it.

Async core::

    store = AsyncShelveDataStore("cache")
    await store.store(component, "spikes", data)
    data = await store.retrieve(component, "spikes")   # None when nothing is stored

Blocking twins (the original NeuroTools API): ``ShelveDataStore(root_dir, key_generator=...)``.
"""

from typing import TYPE_CHECKING

from . import errors, interface, keygenerators, serializers
from ._compute.spec import StoreSpec
from ._keys.fingerprints import code_version
from ._stores.files import AsyncShelveDataStore, ShelveDataStore
from ._stores.memory import AsyncMemoryDataStore, MemoryDataStore
from ._stores.objects import AsyncObjectDataStore, ObjectDataStore
from ._stores.sqlite import AsyncSQLiteDataStore, SQLiteDataStore
from .backend import Backend
from .component import Component
from .decorators import cached
from .errors import (
    ComponentError,
    ConfigurationError,
    CorruptEntryError,
    DataStoreError,
    ExecutorError,
    IntegrityError,
    InvalidKeyError,
    InvalidNameError,
    NetworkFilesystemWarning,
    SerializationError,
    StaleCodeWarning,
    StorageError,
    StoreClosedError,
    UnhashableParameterError,
    UnreadableValueError,
    WorkerStartupError,
)
from .provenance import Explanation, Provenance
from .records import ComponentRecord, Entry, VerifyReport, WarmProgress, WarmReport, WorkerTally
from .serializers import JSONSerializer, PickleSerializer, Serializer
from .stats import Stats
from .store import AsyncDataStore, StoreOptions
from .sync import SyncDataStore
from .urls import open_store, open_store_sync, register_scheme

if TYPE_CHECKING:
    from ._stores.django import AsyncDjangoORMDataStore, DjangoORMDataStore

from ._version import __version__ as __version__

_DJANGO_NAMES = ("AsyncDjangoORMDataStore", "DjangoORMDataStore")


def __getattr__(name: str) -> object:
    # The Django back-end imports Django: only when asked for, and only if installed.
    if name in _DJANGO_NAMES:
        try:
            from ._stores import django
        except ImportError as error:
            return _needs_django(name, error)
        return getattr(django, name)
    raise AttributeError(f"module 'adatastore' has no attribute {name!r}")


def _needs_django(name: str, error: ImportError) -> type:
    reason = str(error)

    class NeedsDjango:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise ConfigurationError(
                f"{name} needs Django, which is not installed "
                f"(pip install 'adatastore[django]'): {reason}"
            )

    NeedsDjango.__name__ = NeedsDjango.__qualname__ = name
    return NeedsDjango


__all__ = [  # the Django names are resolved lazily by __getattr__
    "AsyncDataStore",
    "AsyncDjangoORMDataStore",
    "AsyncMemoryDataStore",
    "AsyncObjectDataStore",
    "AsyncSQLiteDataStore",
    "AsyncShelveDataStore",
    "Backend",
    "Component",
    "ComponentError",
    "ComponentRecord",
    "ConfigurationError",
    "CorruptEntryError",
    "DataStoreError",
    "DjangoORMDataStore",
    "Entry",
    "ExecutorError",
    "Explanation",
    "IntegrityError",
    "InvalidKeyError",
    "InvalidNameError",
    "JSONSerializer",
    "MemoryDataStore",
    "NetworkFilesystemWarning",
    "ObjectDataStore",
    "PickleSerializer",
    "Provenance",
    "SQLiteDataStore",
    "SerializationError",
    "Serializer",
    "ShelveDataStore",
    "StaleCodeWarning",
    "Stats",
    "StorageError",
    "StoreClosedError",
    "StoreOptions",
    "StoreSpec",
    "SyncDataStore",
    "UnhashableParameterError",
    "UnreadableValueError",
    "VerifyReport",
    "WarmProgress",
    "WarmReport",
    "WorkerStartupError",
    "WorkerTally",
    "cached",
    "code_version",
    "errors",
    "interface",
    "keygenerators",
    "open_store",
    "open_store_sync",
    "register_scheme",
    "serializers",
]
