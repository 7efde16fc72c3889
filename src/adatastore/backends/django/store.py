"""`AsyncDjangoORMDataStore` and its blocking twin `DjangoORMDataStore`.

Every ORM call runs as one sync function in Django's ORM thread (``sync_to_async``:
asgiref's thread-sensitive executor), because a transaction must stay in one thread.
Every write statement is idempotent on its own (insert-or-ignore, or an upsert of the
data item: `_rows`), so concurrent stores of one entry from many tasks or processes
neither fail nor duplicate rows; a write that loses a race with a delete is retried.

Payloads live in the database by default; with `data_root_dir` files there (the original
module's layout: index in SQL, data on a (cluster) file system): `_record_files`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import anyio.to_thread

from ..._runtime.waiting import run_to_end
from ..._storage import locks as _locks
from ...backend import Backend, BackendSpec, MapMode, RecordWrite, no_lock
from ...errors import ConfigurationError, StorageError
from ...records import ComponentRecord, DamagedEntry, Entry
from ...serializers import Buffer

try:
    import django  # noqa: F401 - here, for the message
    from asgiref.sync import sync_to_async
except ImportError as error:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "the Django back-end needs Django: pip install 'adatastore[django]'"
    ) from error

from ._record_files import RecordFiles
from ._rows import (
    Item,
    component_records,
    delete_items,
    delete_listed,
    digest,
    first_stored,
    remove_damaged_component,
    size_of,
    upsert,
)
from ._setup import (
    APP,
    backend_spec,
    check_schema,
    database_settings,
    detach_inherited_connections,
    gated,
    largest_value,
    migration_lock,
    setup_django,
)
from ._used import ReadTimes

__all__ = [
    "APP",
    "AsyncDjangoORMDataStore",
    "DjangoBackend",
    "DjangoORMDataStore",
    "database_settings",
]

_RETRIES = 5
T = TypeVar("T")


class DjangoBackend(ReadTimes, Backend):
    """Records in a database through Django's ORM (see `AsyncDjangoORMDataStore`)."""

    requires_asyncio: ClassVar[bool] = True

    def __init__(
        self,
        database_parameters: Mapping[str, Any] | None = None,
        data_root_dir: str | os.PathLike[str] | None = None,
        *,
        alias: str | None = None,
        create: bool = True,
        payloads: str | None = None,
    ) -> None:
        self.create = create
        self._database = (
            None if database_parameters is None else database_settings(database_parameters)
        )
        root = None if data_root_dir is None else Path(data_root_dir)
        self._files = RecordFiles(root, create, payloads)
        self._max_payload: int | None = None
        self._vendor: str | None = None
        self.requested_alias = alias
        self._lock_file: _locks.LockFile | None = None
        self.alias: str | None = None
        self._migrate = False

    @property
    def data_root_dir(self) -> Path | None:
        """Where records are files (absolute once open), or None: in the database."""
        return self._files.data_root_dir

    @property
    def shown(self) -> str:
        """The database as the user named it, for messages: its name and host, or the
        project's alias when they gave one (never the alias made up for them)."""
        settings = self._database
        if settings is None or self.requested_alias is not None:
            return f"database alias {self.requested_alias or self.alias or 'default'!r}"
        host = settings.get("HOST")
        port = f":{settings['PORT']}" if host and settings.get("PORT") else ""
        return f"database {str(settings.get('NAME'))!r}" + (f" on {host}{port}" if host else "")

    def __repr__(self) -> str:
        where = self.alias or self.requested_alias or "(not open)"
        return f"<{type(self).__name__} alias={where}>"

    # -- opening --------------------------------------------------------------------------------

    def forget(self) -> None:
        # A forked child: Django's ORM thread is new (see _new_orm_thread_in_child); the
        # connections this thread may hold are the parent's.
        detach_inherited_connections()
        self._lock_file = None
        self._files.forget()

    async def open(self) -> None:
        settings = self._database or {}
        if (
            not self.create
            and str(settings.get("ENGINE", "")).endswith("sqlite3")
            and not await anyio.to_thread.run_sync(os.path.isfile, str(settings.get("NAME")))
        ):
            raise ConfigurationError(f"no store at {settings.get('NAME')!r}: no such file")
        self.alias, self._migrate = await anyio.to_thread.run_sync(
            setup_django, self.requested_alias, self._database
        )
        if self._files.enabled:
            await anyio.to_thread.run_sync(self._files.prepare)
        uid = await self._orm(self._prepare_tables)
        if self._files.enabled:
            await anyio.to_thread.run_sync(self._files.open, uid)
        settings = self._database or {}
        if (
            settings.get("NAME")
            and str(settings.get("ENGINE", "")).endswith("sqlite3")
            and _locks.LockFile.supported()
        ):
            self._lock_file = _locks.LockFile(Path(str(settings["NAME"]) + "-lock"))

    def _prepare_tables(self) -> str:
        """Migrate (standalone: a new store with `create`, an existing one forward even
        without) or check the tables; return the store marker's uid."""
        from django.core.management import call_command
        from django.db import DatabaseError, connections

        connection = connections[self.alias]
        self._vendor = connection.vendor
        try:
            if self._migrate:  # connecting (SQLite's journal mode set) under the lock too
                with migration_lock(connection):
                    tables = connection.introspection.table_names()
                    if self.create or "adatastore_dataitem" in tables:
                        call_command(
                            "migrate",
                            "adatastore",
                            database=self.alias,
                            verbosity=0,
                            interactive=False,
                        )
            tables = connection.introspection.table_names()
        except DatabaseError as error:
            raise ConfigurationError(
                f"cannot use the {self.shown} for adatastore: {error}"
            ) from error
        if not self.create and "adatastore_dataitem" not in tables:
            raise ConfigurationError(f"no store in the {self.shown}: no adatastore tables")
        check_schema(connection, str(self.alias), tables)
        from .models import StoreMarker

        marker = StoreMarker.objects.using(self.alias).first()
        if marker is None:  # tables made without the migration's data step
            marker, _ = StoreMarker.objects.using(self.alias).get_or_create(
                id=1, defaults={"uid": secrets.token_hex(8)}
            )
        uid = str(marker.uid)
        if not re.fullmatch(r"[0-9a-f]{1,32}", uid):
            raise ConfigurationError(f"{self.shown}: a damaged store marker {uid!r}")
        self._max_payload = largest_value(connection)
        return uid

    async def close(self) -> None:
        if self._lock_file is not None:
            await anyio.to_thread.run_sync(self._lock_file.close)
        self._files.close()
        if self.alias is not None:
            from django.db import connections

            alias = self.alias
            # Looked up in Django's ORM thread: connections are per thread.
            await self._orm(lambda: connections[alias].close())

    # -- helpers --------------------------------------------------------------------------------

    async def _orm(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function(*args)` in Django's ORM thread; database errors → StorageError.

        Every ORM call of this back-end goes through here, as one function: a
        transaction begins and ends inside it (Django's transactions are per thread), it
        runs to its end even when the awaiting task is cancelled, and it runs inside the
        fork gate (a fork never copies SQLite in mid-transaction).
        """
        from django.db import DatabaseError

        try:
            return await sync_to_async(gated)(function, *args)
        except DatabaseError as error:
            raise StorageError(f"{self.shown}: {error}") from error

    def _check_size(self, key: str, attribute_name: str, size: int) -> None:
        """Refuse, before anything is sent, a record the database cannot take in a row."""
        if self._max_payload is not None and size > self._max_payload:
            vendor = self._vendor or "the database"
            setting = (
                " (or raise the server's max_allowed_packet)" if self._vendor == "mysql" else ""
            )
            raise StorageError(
                f"entry {attribute_name!r} of {key!r}: its record is {size:,} bytes, more "
                f"than {vendor} takes in one value here ({self._max_payload:,} bytes); give "
                f"the store a data_root_dir to keep large records in files{setting}"
            )

    # -- the contract ----------------------------------------------------------------------

    async def write(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        await self.write_many([(key, attribute_name, record, component)])

    async def write_many(self, records: Sequence[RecordWrite]) -> None:
        """All records in one transaction: all stored, or none (files included)."""
        if not self._files.enabled:
            for key, name, record, _ in records:
                self._check_size(key, name, size_of(record))
            items = [
                Item(
                    key,
                    name,
                    b"".join(record),
                    None,
                    size_of(record),
                    component,
                    first_stored(record),
                )
                for key, name, record, component in records
            ]
            await self._orm(self._write_items, items, [])
            return
        (await run_to_end(self._write_with_files, records)).unwrap()

    async def _write_with_files(self, records: Sequence[RecordWrite]) -> None:
        items: list[Item] = []
        moves: list[tuple[str, str]] = []

        def write_files() -> None:
            for key, attribute_name, record, component in records:
                name, temp = self._files.payloads.write_temp(record, durable=False)
                moves.append((temp, name))
                items.append(
                    Item(
                        key,
                        attribute_name,
                        None,
                        self._files.column(name),
                        size_of(record),
                        component,
                        first_stored(record),
                    )
                )

        try:
            await anyio.to_thread.run_sync(write_files)
        except BaseException as error:
            for temp, _ in moves:
                await anyio.to_thread.run_sync(self._files.payloads.remove_temp, temp)
            if isinstance(error, OSError):
                raise StorageError(f"{self._files.where_shown}: {error}") from error
            raise
        # From here on the ORM function owns the files: it moves them or removes them.
        await self._orm(self._write_items, items, moves)

    def _write_items(self, items: list[Item], moves: list[tuple[str, str]]) -> None:
        """Store `items` in one transaction, moving their files into place inside it
        (runs in the ORM thread). Replaced files are removed after the commit; on any
        failure nothing is stored and the new files are removed."""
        from django.core.exceptions import ObjectDoesNotExist
        from django.db import IntegrityError, transaction

        alias = self.alias
        moved: set[str] = set()
        try:
            for attempt in range(_RETRIES):
                replaced: list[str] = []
                try:
                    with transaction.atomic(using=alias):
                        for item in items:
                            old = upsert(alias, item)
                            if old is not None and old != item.path:
                                replaced.append(old)
                        for temp, name in moves:
                            if name not in moved:
                                self._files.payloads.move_in(temp, name, durable=False)
                                moved.add(name)
                except (IntegrityError, ObjectDoesNotExist):
                    # A concurrent delete removed a component between our statements.
                    if attempt == _RETRIES - 1:
                        raise
                    continue
                break
        except BaseException:
            for temp, name in moves:
                self._files.payloads.remove_temp(temp)
                if name in moved:
                    self._files.payloads.remove(name)
            raise
        for path in replaced:
            self._files.remove(path)

    async def read_many(
        self, pairs: Sequence[tuple[str, str]], mode: MapMode | None = None
    ) -> list[Buffer | None]:
        """One query for all the rows; records in files are read as `read` reads them."""
        from .models import DataItem

        digests, names = {digest(key): key for key, _ in pairs}, {name for _, name in pairs}

        def query() -> dict[tuple[str, str], tuple[Any, Any]]:
            rows = (
                DataItem.objects.using(self.alias)
                .filter(state__key_digest__in=list(digests), attribute__in=list(names))
                .values_list("state__key_digest", "attribute", "payload", "path")
            )
            return {(digests[d], a): (payload, path) for d, a, payload, path in rows}

        found = await self._orm(query)
        results: list[Buffer | None] = []
        for pair in pairs:
            if pair not in found:
                results.append(None)
            elif found[pair][1] is None:
                results.append(bytearray(found[pair][0]))
            else:
                results.append(await self.read(*pair, mode))
        return results

    async def read(
        self, key: str, attribute_name: str, mode: MapMode | None = None
    ) -> Buffer | None:
        from .models import DataItem

        row = await self._orm(
            lambda: (
                DataItem.objects.using(self.alias)
                .filter(state__key_digest=digest(key), attribute=attribute_name)
                .values_list("payload", "path")
                .first()
            )
        )
        if row is None:
            return None
        payload, path = row
        if path is None:
            return bytearray(payload)
        return await anyio.to_thread.run_sync(self._files.read, key, attribute_name, path, mode)

    read_mapped, read_many_mapped = read, read_many  # files mapped, rows read as usual

    async def contains(self, key: str, attribute_name: str) -> bool:
        from .models import DataItem

        return bool(
            await self._orm(
                lambda: (
                    DataItem.objects.using(self.alias)
                    .filter(state__key_digest=digest(key), attribute=attribute_name)
                    .exists()
                )
            )
        )

    async def delete(self, key: str, attribute_name: str | None) -> int:
        count: int = await self._orm(self._removing_files, delete_items, key, attribute_name)
        return count

    async def delete_listed(self, entries: Sequence[Entry]) -> list[Entry]:
        gone: list[Entry] = await self._orm(self._removing_files, delete_listed, entries)
        return gone

    def _removing_files(self, function: Callable[..., tuple[T, list[str]]], *args: Any) -> T:
        """``function(alias, *args)`` (a deletion of `_rows`, which returns what it gives
        and the paths of the record files of the items it deleted), then those files."""
        result, paths = function(self.alias, *args)
        for path in paths:
            self._files.remove(path)
        return result

    def lock(
        self, key: str, attribute_name: str, timeout: float | None
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        """PostgreSQL advisory lock, MariaDB/MySQL ``GET_LOCK``, or a file beside SQLite."""
        from django.db import connections

        connection = connections[self.alias]
        name = _locks.lock_name(key, attribute_name)
        if connection.vendor == "sqlite":
            database = Path(str(connection.settings_dict["NAME"]))
            if self._lock_file is not None:
                return self._lock_file.hold(key, attribute_name, timeout)
            directory = database.with_name(database.name + "-locks")
            return _locks.FileLock(directory / name).hold(timeout)
        if connection.vendor == "postgresql":
            number = int.from_bytes(bytes.fromhex(name[:16]), "big", signed=True)
            take, give = "SELECT pg_try_advisory_lock(%s)", "SELECT pg_advisory_unlock(%s)"
            argument: object = number
        elif connection.vendor == "mysql":
            take, give = "SELECT GET_LOCK(%s, 0)", "SELECT RELEASE_LOCK(%s)"
            argument = f"adatastore:{name}"
        else:  # pragma: no cover - other engines: no cross-process lock
            return no_lock()

        def run(sql: str) -> bool:
            with connections[self.alias].cursor() as cursor:
                cursor.execute(sql, [argument])
                return bool(cursor.fetchone()[0])

        async def try_acquire() -> bool:
            return bool(await self._orm(run, take))

        async def release() -> None:
            await self._orm(run, give)

        return _locks.polling_lock(try_acquire, release, timeout)

    def spec(self) -> BackendSpec | None:
        return backend_spec(DjangoBackend, self._database, self._files, self.requested_alias)

    async def cleanup(self, older_than: float) -> int:
        if not self._files.enabled:
            return 0
        from .models import DataItem

        referenced = set(
            await self._orm(
                lambda: list(
                    DataItem.objects.using(self.alias)
                    .exclude(path=None)
                    .values_list("path", flat=True)
                )
            )
        )
        return await anyio.to_thread.run_sync(
            self._files.remove_unreferenced, referenced, older_than
        )

    async def components(self, full_type: str | None) -> list[ComponentRecord]:
        found = await self._orm(component_records, self.alias, full_type)
        return found[0]  # a damaged row is passed over: verify reports it

    async def planted(self) -> list[DamagedEntry]:
        return (await self._orm(component_records, self.alias, None))[1]

    async def remove_planted(self, item: DamagedEntry) -> int:
        removed: int = await self._orm(self._removing_files, remove_damaged_component, item.key)
        return removed

    async def entries(self) -> list[Entry]:
        from .models import DataItem

        def query() -> list[Entry]:
            rows = DataItem.objects.using(self.alias).values_list(
                "state__key",
                "attribute",
                "state__component_type__full_type",
                "state__component_type__version",
                "size",
                "stored_at",
            )
            entries = []
            for key, attribute, full_type, version, size, stored_at in rows:
                if stored_at.tzinfo is None:  # a project with USE_TZ = False stores UTC
                    stored_at = stored_at.replace(tzinfo=UTC)
                entries.append(Entry(key, attribute, full_type, version, size, stored_at))
            return entries

        return await self._orm(query)


if TYPE_CHECKING:
    from ..._stores.django import AsyncDjangoORMDataStore, DjangoORMDataStore


def __getattr__(name: str) -> Any:
    """The named stores (AsyncDjangoORMDataStore, DjangoORMDataStore) live above the facade, in
    ``adatastore._stores``; their import path here is served when asked for (PEP 562)."""
    if name in ("AsyncDjangoORMDataStore", "DjangoORMDataStore"):
        from ..._stores import django

        return getattr(django, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
