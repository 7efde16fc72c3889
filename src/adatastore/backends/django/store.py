"""`AsyncDjangoORMDataStore` and its blocking twin `DjangoORMDataStore`.

Queries go through Django's async ORM (``afirst``, ``aexists``, ``async for``); writes that
take several statements run as one sync function through ``sync_to_async``, because Django
runs its async ORM in one thread (asgiref's thread-sensitive executor) and a transaction
must stay in one thread. Every write statement is idempotent on its own (insert-or-ignore,
or an upsert of the data item), so concurrent stores of one entry from many tasks or
processes neither fail nor duplicate rows; a write that loses a race with a delete is
retried.

Payloads live in the database by default. With `data_root_dir` they are files there (the
original module's layout: the index in SQL, the data on a file system, which suits large
arrays and a shared cluster file system), written atomically as in the files back-end.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread

from ... import _fsio, _locks, _naming
from ..._compute import no_lock
from ...errors import ConfigurationError, StorageError
from ...keygenerators import KeyGenerator
from ...serializers import Buffer, Serializer
from ...signing import SigningKey
from ...store import AsyncDataStore, ComponentRecord, Entry
from ...sync import SyncDataStore

try:
    import django
    from asgiref.sync import sync_to_async
except ImportError as error:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "the Django back-end needs Django: pip install 'adatastore[django]'"
    ) from error

__all__ = ["APP", "AsyncDjangoORMDataStore", "DjangoORMDataStore", "database_settings"]

APP = "adatastore.backends.django"
"""What to add to ``INSTALLED_APPS`` in a Django project."""

_LEGACY_KEYS = {
    "DATABASE_ENGINE": "ENGINE",
    "DATABASE_NAME": "NAME",
    "DATABASE_USER": "USER",
    "DATABASE_PASSWORD": "PASSWORD",
    "DATABASE_HOST": "HOST",
    "DATABASE_PORT": "PORT",
    "DATABASE_OPTIONS": "OPTIONS",
}
_ENGINES = {
    "sqlite3": "django.db.backends.sqlite3",
    "sqlite": "django.db.backends.sqlite3",
    "postgresql": "django.db.backends.postgresql",
    "postgresql_psycopg2": "django.db.backends.postgresql",
    "postgres": "django.db.backends.postgresql",
    "mysql": "django.db.backends.mysql",
    "mariadb": "django.db.backends.mysql",
}
_RETRIES = 5
_aliases = itertools.count(1)
_setup_lock = threading.Lock()


def database_settings(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Return a Django ``DATABASES`` entry from a modern or a legacy (NeuroTools) one.

    ``{'DATABASE_ENGINE': 'sqlite3', 'DATABASE_NAME': '/tmp/x.db'}`` becomes
    ``{'ENGINE': 'django.db.backends.sqlite3', 'NAME': '/tmp/x.db'}``; short engine names
    (``sqlite3``, ``postgresql``, ``mysql``) are completed. SQLite gets WAL, a busy timeout
    and immediate transactions, and MySQL/MariaDB the READ COMMITTED isolation level,
    unless the parameters say otherwise.
    """
    if not isinstance(parameters, Mapping):
        raise ConfigurationError(
            f"database_parameters must be a mapping, not {type(parameters).__name__}"
        )
    settings: dict[str, Any] = {}
    for name, value in parameters.items():
        settings[_LEGACY_KEYS.get(name, name)] = value
    engine = settings.get("ENGINE")
    if not isinstance(engine, str) or not engine:
        raise ConfigurationError(
            "database_parameters need an 'ENGINE' (or the legacy 'DATABASE_ENGINE'), such "
            "as 'django.db.backends.postgresql' or 'sqlite3'"
        )
    settings["ENGINE"] = _ENGINES.get(engine, engine)
    if "." not in settings["ENGINE"]:
        raise ConfigurationError(
            f"unknown database engine {engine!r}; use one of {sorted(_ENGINES)} or a "
            "dotted Django engine path"
        )
    if settings.get("PORT") is not None:
        settings["PORT"] = str(settings["PORT"])
    options = dict(settings.get("OPTIONS") or {})
    if settings["ENGINE"].endswith("sqlite3"):
        if not settings.get("NAME"):
            raise ConfigurationError("an SQLite database needs a 'NAME' (its file)")
        options.setdefault("timeout", 60)
        options.setdefault("transaction_mode", "IMMEDIATE")
        options.setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL")
    elif settings["ENGINE"].endswith("mysql"):
        options.setdefault("isolation_level", "read committed")
        options.setdefault("charset", "utf8mb4")
    settings["OPTIONS"] = options
    return settings


def _use_pymysql_if_needed() -> None:
    """Let Django's MySQL back-end run on PyMySQL when mysqlclient is not installed."""
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        try:
            import pymysql
        except ImportError:
            raise ConfigurationError(
                "MySQL/MariaDB needs a driver: pip install 'adatastore[mysql]' (PyMySQL) "
                "or mysqlclient"
            ) from None
        pymysql.version_info = (2, 2, 1, "final", 0)  # what Django asks of mysqlclient
        pymysql.install_as_MySQLdb()


def _setup_django(alias: str | None, database: dict[str, Any] | None) -> tuple[str, bool]:
    """Configure Django if nobody has; add `database` under a new alias if given.

    Returns the alias and whether we configured Django ourselves (standalone use).
    """
    from django.apps import apps
    from django.conf import settings
    from django.db import connections

    with _setup_lock:
        standalone = not settings.configured
        if standalone:
            settings.configure(
                DATABASES={"default": {"ENGINE": "django.db.backends.dummy"}},
                INSTALLED_APPS=[APP],
                USE_TZ=True,
                DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
            )
            django.setup()
        elif not apps.ready:
            django.setup()
        if not apps.is_installed(APP):
            raise ConfigurationError(
                f"Django is configured without the adatastore app: add {APP!r} to "
                "INSTALLED_APPS and run 'manage.py migrate'"
            )
        if database is None:
            name = alias or "default"
            if name not in connections.settings:
                raise ConfigurationError(
                    f"no database alias {name!r} in DATABASES; pass database_parameters "
                    "or an existing alias"
                )
            return name, False
        if database["ENGINE"].endswith("mysql"):
            _use_pymysql_if_needed()
        name = alias or f"adatastore_{next(_aliases)}"
        configured = connections.configure_settings({**connections.settings, name: database})
        existing = connections.settings.get(name)
        if existing is None:
            connections.settings[name] = configured[name]
            settings.DATABASES[name] = configured[name]
        elif existing != configured[name]:
            raise ConfigurationError(
                f"database alias {name!r} is already configured for another database"
            )
        return name, True


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class AsyncDjangoORMDataStore(AsyncDataStore):
    """A store in a database through Django's ORM: SQLite, PostgreSQL or MariaDB/MySQL.

    `database_parameters` is a Django ``DATABASES`` entry (or the legacy NeuroTools form);
    the store gets its own database alias, so several stores on several databases can live
    in one process. Without parameters it uses the project's database `alias`
    (``"default"``). Standalone (Django not configured) it configures a minimal Django and
    migrates its tables; in a project, run ``manage.py migrate`` first.

    Payloads go in the database, or under `data_root_dir` when one is given. Runs on
    asyncio (Django's async ORM does).
    """

    requires_asyncio = True

    def __init__(
        self,
        database_parameters: Mapping[str, Any] | None = None,
        data_root_dir: str | os.PathLike[str] | None = None,
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        *,
        alias: str | None = None,
        signing_key: SigningKey | None = None,
        verify_on_read: bool = True,
    ) -> None:
        super().__init__(
            key_generator, serializer, signing_key=signing_key, verify_on_read=verify_on_read
        )
        self._database = (
            None if database_parameters is None else database_settings(database_parameters)
        )
        self.data_root_dir = None if data_root_dir is None else Path(data_root_dir)
        self._requested_alias = alias
        self._lock_file: _locks.LockFile | None = None
        self.alias: str | None = None
        self._migrate = False

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        where = self.alias or self._requested_alias or "(not open)"
        return f"<{type(self).__name__} alias={where}{state}>"

    # -- opening --------------------------------------------------------------------------------

    async def open_raw(self) -> None:
        self.alias, self._migrate = await anyio.to_thread.run_sync(
            _setup_django, self._requested_alias, self._database
        )
        if self.data_root_dir is not None:
            self.data_root_dir = await anyio.to_thread.run_sync(self._prepare_root)
        await self._sync(self._prepare_tables)
        settings = self._database or {}
        if (
            settings.get("NAME")
            and str(settings.get("ENGINE", "")).endswith("sqlite3")
            and _locks.LockFile.supported()
        ):
            self._lock_file = _locks.LockFile(Path(str(settings["NAME"]) + "-lock"))

    def _prepare_root(self) -> Path:
        assert self.data_root_dir is not None
        root = self.data_root_dir.absolute()
        if root.exists() and not root.is_dir():
            raise ConfigurationError(f"data_root_dir {str(root)!r} is not a directory")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigurationError(
                f"cannot create data_root_dir {str(root)!r}: {error}"
            ) from error
        return root

    def _prepare_tables(self) -> None:
        from django.core.management import call_command
        from django.db import DatabaseError, connections

        connection = connections[self.alias]
        try:
            if self._migrate:
                with _migration_lock(connection):
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
                f"cannot use database {self.alias!r} for adatastore: {error}"
            ) from error
        if "adatastore_dataitem" not in tables:
            raise ConfigurationError(
                f"database {self.alias!r} has no adatastore tables: run "
                f"'manage.py migrate adatastore --database {self.alias}'"
            )

    async def close_raw(self) -> None:
        if self._lock_file is not None:
            await anyio.to_thread.run_sync(self._lock_file.close)
        if self.alias is not None:
            from django.db import connections

            alias = self.alias
            # Looked up in Django's ORM thread: connections are per thread.
            await sync_to_async(lambda: connections[alias].close())()

    # -- helpers --------------------------------------------------------------------------------

    async def _sync(self, function: Any, *args: Any) -> Any:
        """Run a sync ORM function in Django's ORM thread; database errors → StorageError."""
        from django.db import DatabaseError

        try:
            return await sync_to_async(function)(*args)
        except DatabaseError as error:
            raise StorageError(f"database {self.alias!r}: {error}") from error

    @staticmethod
    def _relative_path(key: str, attribute_name: str) -> str:
        """Where a record's file goes, relative to data_root_dir (names encoded)."""
        return os.path.join(_naming.encode_name(key), _naming.encode_name(attribute_name) + ".rec")

    # -- the raw interface ----------------------------------------------------------------------

    async def write_raw(
        self,
        key: str,
        attribute_name: str,
        record: Sequence[Buffer],
        component: ComponentRecord,
    ) -> None:
        size = sum(memoryview(buffer).nbytes for buffer in record)
        path: str | None = None
        payload: bytes | None = None
        if self.data_root_dir is None:
            payload = b"".join(record)
        else:
            path = self._relative_path(key, attribute_name)
            try:
                await anyio.to_thread.run_sync(
                    _write_file, os.path.join(self.data_root_dir, path), record
                )
            except OSError as error:
                raise StorageError(f"data_root_dir {str(self.data_root_dir)!r}: {error}") from error
        await self._sync(self._write_sync, key, attribute_name, payload, path, size, component)

    def _write_sync(
        self,
        key: str,
        attribute_name: str,
        payload: bytes | None,
        path: str | None,
        size: int,
        component: ComponentRecord,
    ) -> None:
        from django.db import IntegrityError, connections

        from .models import ComponentInput, ComponentState, ComponentType, DataItem

        alias = self.alias
        features = connections[alias].features
        for attempt in range(_RETRIES):
            try:
                state = self._state(key, component, ComponentType, ComponentState, ComponentInput)
                DataItem.objects.using(alias).bulk_create(
                    [
                        DataItem(
                            state=state,
                            attribute=attribute_name,
                            payload=payload,
                            path=path,
                            size=size,
                            stored_at=datetime.now(UTC),
                        )
                    ],
                    update_conflicts=True,
                    unique_fields=(
                        ["state", "attribute"]
                        if features.supports_update_conflicts_with_target
                        else None
                    ),
                    update_fields=["payload", "path", "size", "stored_at"],
                )
            except IntegrityError:
                # A concurrent delete removed the component state between our statements.
                if attempt == _RETRIES - 1:
                    raise
            else:
                return

    def _state(
        self,
        key: str,
        component: ComponentRecord,
        ComponentType: Any,  # model classes, imported lazily
        ComponentState: Any,
        ComponentInput: Any,
    ) -> Any:
        """Return the component's state row, creating it (and its type) if needed."""
        alias = self.alias
        digest = _digest(key)
        state = ComponentState.objects.using(alias).filter(key_digest=digest).first()
        if state is not None:
            return state
        type_digest = _digest(f"{component.full_type}\0{component.version}")
        ComponentType.objects.using(alias).bulk_create(
            [
                ComponentType(
                    digest=type_digest, full_type=component.full_type, version=component.version
                )
            ],
            ignore_conflicts=True,
        )
        component_type = ComponentType.objects.using(alias).get(digest=type_digest)
        ComponentState.objects.using(alias).bulk_create(
            [
                ComponentState(
                    key_digest=digest,
                    key=key,
                    component_type=component_type,
                    parameters=json.dumps(component.parameters, ensure_ascii=False),
                )
            ],
            ignore_conflicts=True,
        )
        state = ComponentState.objects.using(alias).get(key_digest=digest)
        ComponentInput.objects.using(alias).bulk_create(
            [
                ComponentInput(
                    state=state,
                    position=position,
                    input_key=input_key,
                    input_digest=_digest(input_key),
                )
                for position, input_key in enumerate(component.input_keys)
            ],
            ignore_conflicts=True,
        )
        return state

    async def read_many_raw(self, pairs: Sequence[tuple[str, str]]) -> list[Buffer | None]:
        """One query for all the entries (files, if any, read in one worker-thread hop)."""
        from .models import DataItem

        digests = {_digest(key): key for key, _ in pairs}
        names = {name for _, name in pairs}

        def query() -> dict[tuple[str, str], tuple[Any, Any]]:
            rows = (
                DataItem.objects.using(self.alias)
                .filter(state__key_digest__in=list(digests), attribute__in=list(names))
                .values_list("state__key_digest", "attribute", "payload", "path")
            )
            return {(digests[d], a): (payload, path) for d, a, payload, path in rows}

        found = await self._sync(query)
        results: list[Buffer | None] = []
        for pair in pairs:
            if pair not in found:
                results.append(None)
            elif found[pair][1] is None:
                results.append(bytearray(found[pair][0]))
            else:
                results.append(await self.read_raw(*pair))
        return results

    async def read_raw(self, key: str, attribute_name: str) -> Buffer | None:
        from django.db import DatabaseError

        from .models import DataItem

        try:
            row = await (
                DataItem.objects.using(self.alias)
                .filter(state__key_digest=_digest(key), attribute=attribute_name)
                .values_list("payload", "path")
                .afirst()
            )
        except DatabaseError as error:
            raise StorageError(f"database {self.alias!r}: {error}") from error
        if row is None:
            return None
        payload, path = row
        if path is None:
            return bytearray(payload)
        if self.data_root_dir is None:
            raise ConfigurationError(
                f"entry {attribute_name!r} of {key!r} is a file under a data_root_dir, but "
                "this store was opened without one"
            )
        try:
            return await anyio.to_thread.run_sync(
                _fsio.read_file, os.path.join(self.data_root_dir, path)
            )
        except OSError as error:
            raise StorageError(f"data_root_dir {str(self.data_root_dir)!r}: {error}") from error

    async def contains_raw(self, key: str, attribute_name: str) -> bool:
        from django.db import DatabaseError

        from .models import DataItem

        try:
            return bool(
                await DataItem.objects.using(self.alias)
                .filter(state__key_digest=_digest(key), attribute=attribute_name)
                .aexists()
            )
        except DatabaseError as error:
            raise StorageError(f"database {self.alias!r}: {error}") from error

    async def delete_raw(self, key: str, attribute_name: str | None) -> int:
        paths, count = await self._sync(self._delete_sync, key, attribute_name)
        if paths and self.data_root_dir is not None:
            root = self.data_root_dir
            await anyio.to_thread.run_sync(_unlink, [os.path.join(root, p) for p in paths])
        return int(count)

    def _delete_sync(self, key: str, attribute_name: str | None) -> tuple[list[str], int]:
        from django.db import transaction

        from .models import ComponentState, DataItem

        digest = _digest(key)
        with transaction.atomic(using=self.alias):
            items = DataItem.objects.using(self.alias).filter(state__key_digest=digest)
            if attribute_name is not None:
                items = items.filter(attribute=attribute_name)
            paths = [p for p in items.values_list("path", flat=True) if p is not None]
            count, _ = items.delete()
            ComponentState.objects.using(self.alias).filter(
                key_digest=digest, items__isnull=True
            ).delete()
        return paths, count

    def lock_raw(
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
            return bool(await self._sync(run, take))

        async def release() -> None:
            await self._sync(run, give)

        return _locks.polling_lock(try_acquire, release, timeout)

    async def cleanup_raw(self, older_than: float) -> int:
        if self.data_root_dir is None:
            return 0
        from .models import DataItem

        referenced = set(
            await self._sync(
                lambda: list(
                    DataItem.objects.using(self.alias)
                    .exclude(path=None)
                    .values_list("path", flat=True)
                )
            )
        )
        root = str(self.data_root_dir)
        return await anyio.to_thread.run_sync(
            _fsio.remove_unreferenced, root, referenced, older_than
        )

    async def components_raw(self, full_type: str | None) -> list[ComponentRecord]:
        from .models import ComponentState

        def query() -> list[ComponentRecord]:
            states = ComponentState.objects.using(self.alias).select_related("component_type")
            if full_type is not None:
                states = states.filter(component_type__full_type=full_type)
            return [
                ComponentRecord(
                    key=state.key,
                    full_type=state.component_type.full_type,
                    version=state.component_type.version,
                    parameters=json.loads(state.parameters),
                    input_keys=tuple(item.input_key for item in state.inputs.order_by("position")),
                )
                for state in states
            ]

        result: list[ComponentRecord] = await self._sync(query)
        return result

    async def list_raw(self) -> list[Entry]:
        from django.db import DatabaseError

        from .models import DataItem

        rows = DataItem.objects.using(self.alias).values_list(
            "state__key",
            "attribute",
            "state__component_type__full_type",
            "state__component_type__version",
            "size",
            "stored_at",
        )
        entries = []
        try:
            async for key, attribute, full_type, version, size, stored_at in rows:
                if stored_at.tzinfo is None:  # a project with USE_TZ = False stores UTC
                    stored_at = stored_at.replace(tzinfo=UTC)
                entries.append(Entry(key, attribute, full_type, version, size, stored_at))
        except DatabaseError as error:
            raise StorageError(f"database {self.alias!r}: {error}") from error
        return entries


@contextlib.contextmanager
def _migration_lock(connection: Any) -> Any:
    """Serialise migrations of one database by several processes starting at once."""
    vendor = connection.vendor
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_lock(%s)", [0x41445331])
        elif vendor == "mysql":
            cursor.execute("SELECT GET_LOCK('adatastore_migrate', 300)")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if vendor == "postgresql":
                cursor.execute("SELECT pg_advisory_unlock(%s)", [0x41445331])
            elif vendor == "mysql":
                cursor.execute("SELECT RELEASE_LOCK('adatastore_migrate')")


def _write_file(path: str, record: Sequence[Buffer]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _fsio.atomic_write(path, record, durable=False)


def _unlink(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))


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
        signing_key: SigningKey | None = None,
        verify_on_read: bool = True,
    ) -> None:
        super().__init__(
            AsyncDjangoORMDataStore(
                database_parameters,
                data_root_dir,
                key_generator,
                serializer,
                alias=alias,
                signing_key=signing_key,
                verify_on_read=verify_on_read,
            )
        )

    @property
    def alias(self) -> str | None:
        """The Django database alias the store uses."""
        return self.async_store.alias
