"""Storage back-ends. Each module holds one; the package re-exports their async classes."""

from .files import AsyncShelveDataStore
from .memory import AsyncMemoryDataStore
from .objects import AsyncObjectDataStore
from .sqlite import AsyncSQLiteDataStore

__all__ = [
    "AsyncMemoryDataStore",
    "AsyncObjectDataStore",
    "AsyncSQLiteDataStore",
    "AsyncShelveDataStore",
]
