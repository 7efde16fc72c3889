"""A store described for another process: what ``warm(executor=...)`` sends to workers.

A `StoreSpec` is picklable and small: the back-end's `BackendSpec` (where the storage is),
the key generator and serializer (by reference or by value, as pickle sends them) and the
checksum setting. The signing key never travels in it: a worker signs with its own
``ADATASTORE_SIGNING_KEY``, and the spec carries only the key's id, so a worker whose key
differs is refused before it stores anything. A worker opens each spec once per process
(`worker_store`) and keeps it for later tasks; a forked child opens its own.

A worker needs no facade: it runs `get_or_compute` on a `StoreHost` (the back-end and
the operation context), so this module sits below ``store.py``, which describes itself
with `describe`. ``open_store(spec)`` gives users an ordinary store from a spec.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
from dataclasses import dataclass, field

from .._codec.compression import Compression
from .._core.ops import Context
from .._core.options import Settings
from .._core.policy import Policy
from .._runtime import forks as _forks
from .._runtime import portal as _portal
from ..backend import Backend, BackendSpec
from ..errors import ConfigurationError
from ..keygenerators import KeyGenerator
from ..serializers import Serializer
from ..signing import ENVIRONMENT_VARIABLE, Signer, signer_from
from .host import assemble

__all__ = ["StoreSpec", "WorkerStore", "describe", "worker_store"]


@dataclass(frozen=True, eq=False)
class StoreSpec:
    """How another process opens an equivalent store (``store.spec``); picklable.

    ``open_store(spec)`` / ``open_store_sync(spec)`` open it. The signing key is not in
    it: the other process needs the same key in ``ADATASTORE_SIGNING_KEY``.
    """

    backend: BackendSpec
    key_generator: KeyGenerator
    serializer: Serializer
    key_id: str | None = None
    """The id of the signing key (`Signer.key_id`), or None for an unsigned store."""
    settings: Settings = field(default_factory=Settings)
    """The store's parsed options — checks, compression, ``mmap``, policy (bad entries,
    code changes, limits): a worker's store is assembled from them as the caller's was."""
    token: str = field(default="", compare=False)
    """Names the spec in a worker's cache of open stores."""

    @property
    def policy(self) -> Policy:
        """Bad entries, code changes, limits: workers follow the store's policy."""
        return self.settings.policy

    @property
    def compression(self) -> Compression | None:
        """How the store compresses what it writes (workers storing do the same)."""
        return self.settings.compression

    @property
    def verify_on_read(self) -> bool:
        return self.settings.verify_on_read

    @property
    def url(self) -> str:
        """Where the store is, password masked."""
        return self.backend.url

    def signer(self) -> Signer | None:
        """This process's signer for the store: refused unless its key is the spec's."""
        signer = signer_from(None)
        found = None if signer is None else signer.key_id()
        if found == self.key_id:
            return signer
        if self.key_id is None:
            raise ConfigurationError(
                f"the store {self.url} is unsigned, but {ENVIRONMENT_VARIABLE} is set in "
                "this process: unset it here, or sign the store"
            )
        problem = "is not set" if found is None else f"holds another key (id {found})"
        raise ConfigurationError(
            f"the store {self.url} signs with the key of id {self.key_id}, and "
            f"{ENVIRONMENT_VARIABLE} {problem} in this process: give every worker the "
            f"same key in {ENVIRONMENT_VARIABLE}"
        )

    def __repr__(self) -> str:
        signed = ", signed" if self.key_id else ""
        return f"StoreSpec({self.url!r}{signed})"


def describe(backend: Backend, context: Context) -> StoreSpec | None:
    """The spec of an open store, or None when only this process reaches its storage."""
    where = backend.spec()
    if where is None:
        return None
    codec = context.codec
    signer = codec.signer
    settings = Settings(context.policy, codec.verify_on_read, codec.compression, context.mmap)
    spec = StoreSpec(
        where,
        context.identity.key_generator,
        codec.serializer,
        None if signer is None else signer.key_id(),
        settings,
    )
    try:
        data = pickle.dumps(spec, protocol=5)
    except Exception as error:
        raise ConfigurationError(
            f"the store {where.url} cannot be described for other processes: its key "
            f"generator or serializer cannot be pickled ({type(error).__name__}: {error})"
        ) from None
    object.__setattr__(spec, "token", hashlib.sha256(data).hexdigest())
    return spec


class WorkerStore:
    """A store opened from a spec in a worker: a `StoreHost` and its lifecycle."""

    def __init__(self, spec: StoreSpec) -> None:
        backend = spec.backend.make()
        backend.warn_unclosed = False  # closed at exit by the portal, or with the process
        self.spec = spec
        parts = assemble(
            backend, self, spec.key_generator, spec.serializer, spec.settings, spec.signer()
        )
        self.context, self.host, self.lifecycle = parts

    async def aclose(self) -> None:
        await self.lifecycle.close()

    def __repr__(self) -> str:
        return f"<WorkerStore {self.spec.url!r}>"


_open: dict[str, WorkerStore] = {}
_opening = threading.Lock()


def _forget_in_child() -> None:
    global _opening
    _forks.remember(dict(_open))  # the parent's stores: never finalized here
    _open.clear()
    _opening = threading.Lock()


_forks.on_fork(_forget_in_child)


def worker_store(spec: StoreSpec) -> WorkerStore:
    """The store `spec` names, opened once per worker process and kept until exit."""
    store = _open.get(spec.token)
    if store is None:
        with _opening:
            store = _open.get(spec.token)
            if store is None:
                store = WorkerStore(spec)
                _portal.call(store.lifecycle.ready)
                _portal.track(store)
                _open[spec.token] = store
    return store
