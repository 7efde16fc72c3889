"""`AsyncDjangoORMDataStore` and `DjangoORMDataStore`: the Django engine under the
facade. Importing this module imports Django (the package imports it only when asked)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Unpack

from .._core.options import StoreOptions
from ..backends.django.store import DjangoBackend
from ..keygenerators import KeyGenerator
from ..serializers import Serializer
from ..store import AsyncDataStore
from ..sync import SyncDataStore

__all__ = ["AsyncDjangoORMDataStore", "DjangoORMDataStore"]


class AsyncDjangoORMDataStore(AsyncDataStore):
    """A store in a database through Django's ORM: SQLite, PostgreSQL or MariaDB/MySQL.

    `database_parameters` is a Django ``DATABASES`` entry (or the legacy NeuroTools form);
    the store gets its own database alias, so several stores on several databases can live
    in one process. Without parameters it uses the project's database `alias`
    (``"default"``). Standalone (Django not configured) it configures a minimal Django and
    migrates its tables; in a project, run ``manage.py migrate`` first.

    Payloads go in the database, or under `data_root_dir` when one is given, or, with
    ``payloads="s3://bucket/prefix?endpoint=..."``, in a bucket (credentials from the AWS
    environment): the database keeps rows, keys, locks and listings. Runs on asyncio
    (Django's async ORM does).
    """

    backend: DjangoBackend

    def __init__(
        self,
        database_parameters: Mapping[str, Any] | None = None,
        data_root_dir: str | os.PathLike[str] | None = None,
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        *,
        alias: str | None = None,
        create: bool = True,
        payloads: str | None = None,
        **options: Unpack[StoreOptions],
    ) -> None:
        super().__init__(
            DjangoBackend(
                database_parameters, data_root_dir, alias=alias, create=create, payloads=payloads
            ),
            key_generator=key_generator,
            serializer=serializer,
            **options,
        )

    @property
    def alias(self) -> str | None:
        """The Django database alias (known once the store is open)."""
        return self.backend.alias

    @property
    def data_root_dir(self) -> Path | None:
        """Where record files go, if anywhere."""
        return self.backend.data_root_dir


class DjangoORMDataStore(SyncDataStore[AsyncDjangoORMDataStore]):
    """Blocking Django store, with the original module's signature.

    ``DjangoORMDataStore(database_parameters, data_root_dir)``; see
    `AsyncDjangoORMDataStore`.
    """

    def __init__(
        self,
        database_parameters: Mapping[str, Any] | None = None,
        data_root_dir: str | os.PathLike[str] | None = None,
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        *,
        alias: str | None = None,
        create: bool = True,
        payloads: str | None = None,
        **options: Unpack[StoreOptions],
    ) -> None:
        super().__init__(
            AsyncDjangoORMDataStore(
                database_parameters,
                data_root_dir,
                key_generator,
                serializer,
                alias=alias,
                create=create,
                payloads=payloads,
                **options,
            )
        )

    @property
    def alias(self) -> str | None:
        """The Django database alias the store uses."""
        return self.async_store.alias
