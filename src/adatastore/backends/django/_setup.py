"""Django set up for adatastore: settings from the legacy form, a database alias per
store, migrations serialised between processes, and a fresh ORM thread after a fork.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import itertools
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import django
from asgiref.sync import SyncToAsync

from ..._runtime import forks as _forks
from ...backend import Backend, BackendSpec
from ...errors import ConfigurationError

if TYPE_CHECKING:
    from ._record_files import RecordFiles

__all__ = [
    "APP",
    "backend_spec",
    "check_schema",
    "database_settings",
    "detach_inherited_connections",
    "gated",
    "largest_value",
    "migration_lock",
    "setup_django",
]

T = TypeVar("T")

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
_aliases = itertools.count(1)
_setup_lock = threading.Lock()


def _new_orm_thread_in_child() -> None:
    """A forked child has no thread behind asgiref's executor for Django's ORM (every
    call would wait forever): give it a fresh one, which starts at its first use."""
    global _setup_lock
    SyncToAsync.single_thread_executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    _setup_lock = threading.Lock()


_forks.on_fork(_new_orm_thread_in_child)


def detach_inherited_connections() -> None:
    """Forget, without closing, the Django connections this thread inherited in a fork.

    Closing them would end the parent's sessions (a PostgreSQL connection sends its
    Terminate on the shared socket); the child connects anew at its next query.
    """
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            _forks.remember(connection.connection)
            connection.connection = None
        connection.in_atomic_block = False
        connection.savepoint_ids = []
        connection.atomic_blocks = []
        connection.needs_rollback = False
        connection.run_on_commit = []


def database_settings(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Return a Django ``DATABASES`` entry from a modern or a legacy (NeuroTools) one.

    ``{'DATABASE_ENGINE': 'sqlite3', 'DATABASE_NAME': '/tmp/x.db'}`` becomes
    ``{'ENGINE': 'django.db.backends.sqlite3', 'NAME': '/tmp/x.db'}``; short engine names
    (``sqlite3``, ``postgresql``, ``mysql``) are completed. SQLite gets WAL, a busy timeout
    and immediate transactions, and MySQL/MariaDB the READ COMMITTED isolation level,
    unless the parameters say otherwise.

    An SQLite database given in the legacy form keeps SQLite's rollback journal instead of
    WAL: scripts of the original module delete the database file under a store they cannot
    close (the legacy API has no ``close``), and SQLite then never removes the ``-wal`` and
    ``-shm`` files of a database that moved; a rollback journal leaves nothing behind.
    """
    if not isinstance(parameters, Mapping):
        raise ConfigurationError(
            f"database_parameters must be a mapping, not {type(parameters).__name__}"
        )
    settings: dict[str, Any] = {}
    legacy = any(name in _LEGACY_KEYS for name in parameters)
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
        journal = "DELETE" if legacy else "WAL"
        options.setdefault(
            "init_command", f"PRAGMA journal_mode={journal}; PRAGMA synchronous=NORMAL"
        )
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


def setup_django(alias: str | None, database: dict[str, Any] | None) -> tuple[str, bool]:
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


@contextlib.contextmanager
def migration_lock(connection: Any) -> Iterator[None]:
    """Serialise migrations of one database by several processes starting at once.

    PostgreSQL and MariaDB: an advisory lock. SQLite: an exclusive ``flock`` of the
    database's directory (no file of ours is left beside the database; and not of the
    database file itself: closing any descriptor of that file drops the process's fcntl
    locks on it, SQLite's own included — "disk I/O error"): two processes creating the same
    new store both found no tables, and the second failed on "already exists".
    """
    vendor = connection.vendor
    if vendor == "sqlite":
        name = str(connection.settings_dict["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            yield
            return
        directory = os.path.dirname(os.path.abspath(name))
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
        return
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


def largest_value(connection: Any) -> int | None:
    """The largest record a row of this database takes (a margin for the statement)."""
    if connection.vendor == "mysql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@max_allowed_packet")
            (packet,) = cursor.fetchone()
        return int(packet) - 64 * 1024
    if connection.vendor == "postgresql":
        return (1 << 30) - 64 * 1024  # bytea values stop at 1 GiB
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        return int(connection.connection.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)) - 64 * 1024
    return None


def gated(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` inside the fork gate (a fork never copies SQLite mid-transaction)."""
    with _forks.gate:
        return function(*args)


def backend_spec(
    factory: Callable[..., Backend],
    database: Mapping[str, Any] | None,
    files: RecordFiles,
    alias: str | None,
) -> BackendSpec | None:
    """How a worker opens the same Django store (None for an in-memory SQLite database).

    Without `database` the store uses the project's own ``DATABASES``: a worker then
    needs the same Django settings (``DJANGO_SETTINGS_MODULE``) in its environment.
    """
    arguments: dict[str, Any] = {"alias": alias, "create": False}
    root = files.data_root_dir
    arguments["data_root_dir"] = None if root is None else os.fspath(root)
    arguments["payloads"] = files.bucket
    if database is None:
        return BackendSpec(factory, arguments, f"django:(the project's settings, {alias})")
    settings = dict(database)
    engine = str(settings.get("ENGINE", "")).rsplit(".", 1)[-1]
    name = str(settings.get("NAME", ""))
    if engine == "sqlite3":
        if name in ("", ":memory:") or name.startswith("file:"):
            return None
        # (abspath asks the OS for the working directory: only for a relative name)
        name = os.path.normpath(name) if os.path.isabs(name) else os.path.abspath(name)
        settings["NAME"] = name
        url = f"django+sqlite:///{name}"
    else:
        user = str(settings.get("USER") or "")
        user += ":***" if settings.get("PASSWORD") else ""
        user += "@" if user else ""
        port = f":{settings.get('PORT')}" if settings.get("PORT") else ""
        url = f"django+{engine}://{user}{settings.get('HOST') or 'localhost'}{port}/{name}"
    arguments["database_parameters"] = settings
    return BackendSpec(factory, arguments, url)


def check_schema(connection: Any, alias: str, tables: list[str]) -> None:
    """Refuse tables older than this release's models (a project that upgraded adatastore
    and has not migrated: its writes would fail on the missing column)."""
    from django.db import DatabaseError

    current = "adatastore_storemarker" in tables
    if current:
        # A plain query, in no transaction: Django's introspection probes SQLite's JSON
        # support in one, and the store's SQLite transactions are IMMEDIATE: opening a
        # store would wait for any other process's write.
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT used_at FROM adatastore_dataitem WHERE 1 = 0")
        except DatabaseError:
            current = False
    if not current:
        raise ConfigurationError(
            f"database {alias!r} has no (or old) adatastore tables: run "
            f"'manage.py migrate adatastore --database {alias}'"
        )
