"""`cached`: declare that a component's method computes a stored attribute.

    class Network:
        def __init__(self, parameters, input=None):
            self.parameters, self.input = parameters, input
        version = "1.0"

        @cached("spikes", store=lambda network: network.datastore)
        async def spikes(self):
            return await simulate(self)

``await network.spikes()`` returns the stored spikes, or simulates, stores and returns them
(through `AsyncDataStore.get_or_compute`, so concurrent callers simulate once). A plain
``def`` method works the same way with a blocking store (``ShelveDataStore``,
``SQLiteDataStore``, ...) and is called without ``await``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from .errors import ConfigurationError
from .store import AsyncDataStore
from .sync import SyncDataStore

__all__ = ["cached"]

F = TypeVar("F", bound=Callable[..., Any])
StoreSource = AsyncDataStore | SyncDataStore[Any] | Callable[[Any], Any]


def cached(attribute_name: str | None = None, *, store: StoreSource) -> Callable[[F], F]:
    """Cache a method's result in `store` as the attribute `attribute_name` of `self`.

    `attribute_name` defaults to the method's name. `store` is a store, or a callable
    that takes the component and returns one (to use a store the component carries).
    Async methods need an async store, plain methods a blocking one. The method takes no
    arguments besides ``self``: everything that decides its result belongs in the
    component's parameters, version and inputs.
    """

    def decorate(method: F) -> F:
        name = attribute_name or method.__name__

        def resolve(component: Any) -> Any:
            if isinstance(store, AsyncDataStore | SyncDataStore):
                return store
            return store(component)

        if inspect.iscoroutinefunction(method):

            @functools.wraps(method)
            async def async_wrapper(self: Any) -> Any:
                target = resolve(self)
                if not isinstance(target, AsyncDataStore):
                    raise ConfigurationError(
                        f"@cached async method {method.__qualname__} needs an async store "
                        f"(AsyncSQLiteDataStore, ...), not {type(target).__name__}"
                    )
                call = cast(Callable[[], Awaitable[Any]], functools.partial(method, self))
                return await target.get_or_compute(self, name, call)

            return cast(F, async_wrapper)

        @functools.wraps(method)
        def wrapper(self: Any) -> Any:
            target = resolve(self)
            if not isinstance(target, SyncDataStore):
                raise ConfigurationError(
                    f"@cached method {method.__qualname__} needs a blocking store "
                    f"(SQLiteDataStore, ShelveDataStore, ...), not {type(target).__name__}; "
                    "make the method async to use an async store"
                )
            return target.get_or_compute(self, name, functools.partial(method, self))

        return cast(F, wrapper)

    return decorate
