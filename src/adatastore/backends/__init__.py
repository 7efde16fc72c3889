"""The storage engines: each module (or package) holds one `Backend`, and imports
neither the facade (`adatastore.store`, `adatastore.sync`) nor the named stores made of
it (`adatastore._stores`), so the engines sit low in the import graph. The async named
classes of 0.2.0's ``from adatastore.backends import AsyncSQLiteDataStore`` are served
from there when asked for (PEP 562)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._stores.files import AsyncShelveDataStore
    from .._stores.memory import AsyncMemoryDataStore
    from .._stores.objects import AsyncObjectDataStore
    from .._stores.sqlite import AsyncSQLiteDataStore

__all__ = [
    "AsyncMemoryDataStore",
    "AsyncObjectDataStore",
    "AsyncSQLiteDataStore",
    "AsyncShelveDataStore",
]


def __getattr__(name: str) -> Any:
    from .._stores import files, memory, objects, sqlite

    for module in (files, memory, objects, sqlite):
        if name in __all__ and name in module.__all__:
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
