"""Real database servers for the tests: fresh databases, and skip-or-fail when absent.

PostgreSQL (127.0.0.1:5432, user postgres, trust) and MariaDB (127.0.0.1:3306, root, no
password) run on the development and CI machines. Where one is absent the tests that need
it skip, unless ADATASTORE_REQUIRE_SERVERS=1 (set by .ci/run), which makes them fail.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

POSTGRESQL = {"HOST": "127.0.0.1", "PORT": "5432", "USER": "postgres", "PASSWORD": ""}
MARIADB = {"HOST": "127.0.0.1", "PORT": "3306", "USER": "root", "PASSWORD": ""}
REQUIRED = os.environ.get("ADATASTORE_REQUIRE_SERVERS") == "1"


def _unavailable(server: str, error: Exception) -> None:
    message = f"{server} is not reachable: {error}"
    if REQUIRED:
        pytest.fail(f"{message} (ADATASTORE_REQUIRE_SERVERS=1)")
    pytest.skip(message)


def _postgresql_admin() -> Any:
    import psycopg

    return psycopg.connect(
        host=POSTGRESQL["HOST"],
        port=int(POSTGRESQL["PORT"]),
        user=POSTGRESQL["USER"],
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    )


def _mariadb_admin() -> Any:
    import pymysql

    return pymysql.connect(
        host=MARIADB["HOST"],
        port=int(MARIADB["PORT"]),
        user=MARIADB["USER"],
        password=MARIADB["PASSWORD"],
        autocommit=True,
        connect_timeout=5,
    )


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[dict[str, Any]]:
    """Create an empty database on `server`; yield its Django settings; drop it after."""
    name = f"adatastore_test_{secrets.token_hex(6)}"
    try:
        admin = _postgresql_admin() if server == "postgresql" else _mariadb_admin()
    except Exception as error:  # any failure to connect means absent
        _unavailable(server, error)
        raise
    try:
        with contextlib.closing(admin.cursor()) as cursor:
            if server == "postgresql":
                cursor.execute(f'CREATE DATABASE "{name}"')
                engine, base = "django.db.backends.postgresql", POSTGRESQL
            else:
                cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
                engine, base = "django.db.backends.mysql", MARIADB
        yield {"ENGINE": engine, "NAME": name, **base}
    finally:
        with contextlib.closing(admin.cursor()) as cursor:
            if server == "postgresql":
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()
