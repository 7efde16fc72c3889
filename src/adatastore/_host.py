"""What `get_or_compute` and `warm` see of a store: the `ComputeHost` and `WarmHost`
protocols, implemented over a back-end and the operation core.

The compute machinery (``_compute.py``, ``_warm.py``) thus depends on these few methods,
not on the store's facade, and the facade depends on it: no cycle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from . import _ops
from ._compute import Flights
from .backend import Backend, MapMode, RecordWrite
from .stats import Stats

__all__ = ["StoreHost"]


class StoreHost:
    """A store's back-end, operation context and in-process flights, for compute."""

    __slots__ = ("backend", "context", "flights")

    def __init__(self, backend: Backend, context: _ops.Context) -> None:
        self.backend = backend
        self.context = context
        self.flights = Flights()

    def forget_flights(self) -> None:
        """In a forked child: the parent's computations are not ours to wait for."""
        self.flights = Flights()

    @property
    def stats(self) -> Stats:
        return self.context.stats

    def key(self, component: object) -> str:
        return self.context.identity.key(component)

    def lock(
        self, key: str, attribute_name: str, timeout: float | None
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        return self.backend.lock(key, attribute_name, timeout)

    async def lookup(
        self, key: str, attribute_name: str, value_needed: bool, mode: MapMode | None = None
    ) -> Any:
        if value_needed:
            operation = _ops.fetch(self.context, key, attribute_name, mode)
            return await _ops.drive(operation, self.backend)
        found = await self.backend.contains(key, attribute_name)
        return None if found else _ops.MISSING

    async def put(
        self, component: object, key: str, attribute_name: str, value: Any, seconds: float
    ) -> None:
        operation = _ops.store(self.context, component, attribute_name, value, seconds)
        await _ops.drive(operation, self.backend)

    async def contains_many(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        return await self.backend.contains_many(pairs)

    async def seal(
        self, component: object, attribute_name: str, value: Any, seconds: float | None
    ) -> RecordWrite:
        operation = _ops.seal(self.context, component, attribute_name, value, seconds)
        return await _ops.drive(operation, self.backend)

    async def write_many(self, writes: Sequence[RecordWrite]) -> None:
        await _ops.drive(_ops.write_sealed(self.context, writes), self.backend)
