"""What `get_or_compute` and `warm` see of a store: the `ComputeHost` and `WarmHost`
protocols, implemented over a back-end and the operation core.

The compute machinery (``flights``, ``warm``) thus depends on these few methods, not on
the store's facade, and the facade depends on it: no cycle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import anyio.to_thread

from .._codec.sealing import Codec
from .._core import checks as _checks
from .._core import ops as _ops
from .._core.identity import Identity
from .._core.lifecycle import Lifecycle
from .._core.options import Settings
from .._core.policy import BAD_ENTRY_ERRORS, BadEntry
from .._core.staleness import all_known, learn_all
from ..backend import Backend, MapMode, RecordWrite
from ..keygenerators import KeyGenerator
from ..serializers import Serializer
from ..signing import Signer
from ..stats import Stats
from .flights import Flights
from .warm import Soundness

__all__ = ["StoreHost", "StoreParts", "assemble"]


class StoreParts(NamedTuple):
    """What a store is made of over its back-end, wired together by `assemble`."""

    context: _ops.Context
    host: StoreHost
    lifecycle: Lifecycle


def assemble(
    backend: Backend,
    owner: object,
    key_generator: KeyGenerator,
    serializer: Serializer | None,
    settings: Settings,
    signer: Signer | None,
    stats: Stats | None = None,
) -> StoreParts:
    """A store's operation context, compute host and lifecycle over `backend`, wired as
    every store has them from its parsed `settings`: the facade and an executor worker's
    store are both made here. (Assembled twice, the two had drifted: a worker's store had
    no limiter at close and dropped the read notes of a size-limited store.)"""
    policy = settings.policy
    identity = Identity(key_generator, policy.key_includes_code)
    codec = Codec.build(serializer, signer, settings.verify_on_read, settings.compression)
    stats = Stats() if stats is None else stats
    context = _ops.Context(identity, codec, stats, settings.mmap, policy)
    host = StoreHost(backend, context)
    lifecycle = Lifecycle(backend, owner, host.forget_flights, context.limiter)
    return StoreParts(context, host, lifecycle)


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

    @property
    def recompute_bad(self) -> bool:
        return self.context.policy.recompute_bad

    def key(self, component: object) -> str:
        return self.context.identity.key(component)

    async def key_async(self, component: object) -> str:
        """The key, its code fingerprints (``key_includes_code``) computed off the loop
        the first time a type is met."""
        await self.prepare([component])
        return self.context.identity.key(component)

    async def prepare(self, components: Sequence[object]) -> None:
        """With ``key_includes_code``, compute the fingerprints keys need (file I/O) in a
        worker thread, for the components whose types were not met yet."""
        if not self.context.identity.code:
            return
        unknown = [component for component in components if not all_known(component)]
        if unknown:
            await anyio.to_thread.run_sync(learn_all, unknown)

    def lock(
        self, key: str, attribute_name: str, timeout: float | None
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        return self.backend.lock(key, attribute_name, timeout)

    async def lookup(
        self,
        key: str,
        attribute_name: str,
        value_needed: bool,
        mode: MapMode | None = None,
        component: object = None,
        compute: Callable[..., Any] | None = None,
    ) -> Any:
        """The value, `MISSING` (an expired entry too), or a `BadEntry` when the store
        recomputes bad entries.

        Without `value_needed` the entry is still read and checked (`check`: bad or
        expired?); the callers asking so (a warm-up's entries held elsewhere, executor
        workers) ask about entries found missing or bad a moment ago.
        """
        try:
            if value_needed:
                context = self.context
                operation = _ops.fetch(context, key, attribute_name, mode, component, compute)
                return await _ops.drive(operation, self.backend)
            return None if await self.check(key, attribute_name) else _ops.MISSING
        except BAD_ENTRY_ERRORS as error:
            if not self.context.policy.recompute_bad:
                raise
            return BadEntry(error)

    async def check(self, key: str, attribute_name: str) -> bool:
        """Whether the entry is stored and not expired (`checks.check`: raises for a bad
        one)."""
        return await _ops.drive(_checks.check(self.context, key, attribute_name), self.backend)

    async def sound_many(
        self,
        pairs: list[tuple[str, str]],
        check: bool,
        components: Sequence[object] = (),
        compute: Callable[..., Any] | None = None,
    ) -> Soundness:
        """Which entries are stored and sound (`checks.sound_many`)."""
        operation = _checks.sound_many(self.context, pairs, check, components, compute)
        return Soundness(*await _ops.drive(operation, self.backend))

    async def put(
        self,
        component: object,
        key: str,
        attribute_name: str,
        value: Any,
        seconds: float,
        compute: Callable[..., Any] | None = None,
    ) -> None:
        operation = _ops.store(self.context, component, attribute_name, value, seconds, compute)
        await _ops.drive(operation, self.backend)

    async def seal(
        self,
        component: object,
        attribute_name: str,
        value: Any,
        seconds: float | None,
        compute: Callable[..., Any] | None = None,
    ) -> RecordWrite:
        operation = _ops.seal(self.context, component, attribute_name, value, seconds, compute)
        return await _ops.drive(operation, self.backend)

    async def write_many(self, writes: Sequence[RecordWrite]) -> None:
        await _ops.drive(_ops.write_sealed(self.context, writes), self.backend)
