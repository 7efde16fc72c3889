"""adatastore: cache what long computations produce, keyed by the component that made it.

Async core::

    store = AsyncShelveDataStore("cache")
    await store.store(component, "spikes", data)
    data = await store.retrieve(component, "spikes")   # None when nothing is stored

Blocking twins (the original NeuroTools API): ``ShelveDataStore(root_dir, key_generator=...)``.
"""

from . import errors, keygenerators, serializers
from .backends.files import AsyncShelveDataStore
from .backends.memory import AsyncMemoryDataStore
from .backends.sqlite import AsyncSQLiteDataStore
from .component import Component
from .errors import (
    ComponentError,
    ConfigurationError,
    CorruptEntryError,
    DataStoreError,
    SerializationError,
    UnhashableParameterError,
)
from .serializers import JSONSerializer, PickleSerializer, Serializer
from .store import AsyncDataStore, ComponentRecord, Entry
from .sync import MemoryDataStore, ShelveDataStore, SQLiteDataStore, SyncDataStore
from .urls import open_store, open_store_sync, register_scheme

__version__ = "0.1.0"

__all__ = [
    "AsyncDataStore",
    "AsyncMemoryDataStore",
    "AsyncSQLiteDataStore",
    "AsyncShelveDataStore",
    "Component",
    "ComponentError",
    "ComponentRecord",
    "ConfigurationError",
    "CorruptEntryError",
    "DataStoreError",
    "Entry",
    "JSONSerializer",
    "MemoryDataStore",
    "PickleSerializer",
    "SQLiteDataStore",
    "SerializationError",
    "Serializer",
    "ShelveDataStore",
    "SyncDataStore",
    "UnhashableParameterError",
    "errors",
    "keygenerators",
    "open_store",
    "open_store_sync",
    "register_scheme",
    "serializers",
]
