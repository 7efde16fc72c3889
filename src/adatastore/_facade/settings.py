"""The settings a store shows (`StoreSettings`, a base of `AsyncDataStore`): its key
generator, serializer, signer, checks and spec, read from the parts it holds."""

from __future__ import annotations

from .._compute import spec as _spec
from .._compute.host import StoreParts
from ..backend import Backend
from ..errors import ConfigurationError
from ..keygenerators import KeyGenerator
from ..serializers import Serializer
from ..signing import Signer

__all__ = ["StoreSettings"]


class StoreSettings:
    """Read-only views of a store's parts (and `verify_on_read`, which may be set)."""

    backend: Backend
    _parts: StoreParts

    @property
    def key_generator(self) -> KeyGenerator:
        """Makes the key of a component (see `adatastore.keygenerators`)."""
        return self._parts.context.identity.key_generator

    @property
    def serializer(self) -> Serializer:
        """Turns values into bytes and back."""
        return self._parts.context.codec.serializer

    @property
    def signer(self) -> Signer | None:
        """Signs and checks records (None without a signing key)."""
        return self._parts.context.codec.signer

    @property
    def verify_on_read(self) -> bool:
        """Whether reads check the payload checksum (signatures are always checked)."""
        return self._parts.context.codec.verify_on_read

    @verify_on_read.setter
    def verify_on_read(self, value: bool) -> None:
        self._parts.context.codec.verify_on_read = value

    @property
    def requires_asyncio(self) -> bool:
        """Whether the back-end runs on asyncio only (the Django ORM's does)."""
        return self.backend.requires_asyncio

    @property
    def spec(self) -> _spec.StoreSpec | None:
        """How another process opens this store (picklable; ``open_store(spec)``), or None
        when only this process can reach it (memory). Known once the store is open."""
        if not self._parts.lifecycle.opened:
            raise ConfigurationError(f"{self!r} is not open yet: its spec is known once open")
        return _spec.describe(self.backend, self._parts.context)
