"""The Django back-end: legacy form, several databases, processes, projects, admin, URLs."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from components import SimpleComponent
from helpers import run_python, subprocess_env
from servers import fresh_database

from adatastore import AsyncDjangoORMDataStore, DjangoORMDataStore, open_store, open_store_sync
from adatastore.backends.django.store import database_settings
from adatastore.errors import ConfigurationError

pytestmark = pytest.mark.asyncio_only  # Django's async ORM runs on asyncio


# -- settings ---------------------------------------------------------------------------------


def test_legacy_and_modern_database_parameters() -> None:
    legacy = database_settings(
        {"DATABASE_ENGINE": "sqlite3", "DATABASE_NAME": "/tmp/x.db", "DATABASE_USER": ""}
    )
    assert legacy["ENGINE"] == "django.db.backends.sqlite3"
    assert legacy["NAME"] == "/tmp/x.db"
    assert legacy["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    modern = database_settings(
        {"ENGINE": "django.db.backends.postgresql", "NAME": "db", "HOST": "h", "PORT": 5432}
    )
    assert (modern["ENGINE"], modern["PORT"]) == ("django.db.backends.postgresql", "5432")
    mysql = database_settings({"ENGINE": "mysql", "NAME": "db", "OPTIONS": {"charset": "utf8"}})
    assert mysql["OPTIONS"] == {"charset": "utf8", "isolation_level": "read committed"}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, "need an 'ENGINE'"),
        ({"ENGINE": "oracle9"}, "unknown database engine 'oracle9'"),
        ({"DATABASE_ENGINE": "sqlite3"}, "needs a 'NAME'"),
        ([("ENGINE", "sqlite3")], "must be a mapping"),
    ],
)
def test_bad_database_parameters(parameters: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        DjangoORMDataStore(parameters)


# -- the original documentation's form ---------------------------------------------------------


def test_legacy_form_with_a_chain_of_inputs(tmp_path: Path) -> None:
    result = run_python(
        """
        import sys
        from parameters import ParameterSet
        from adatastore import *   # was: from NeuroTools.datastore import *

        class SimpleComponent(object):
            def __init__(self, parameters, input=None):
                self.parameters = parameters
                self.input = input
            version = "$Revision: 1 $"

        datastore = DjangoORMDataStore(
            database_parameters={'DATABASE_ENGINE': 'sqlite3', 'DATABASE_NAME': sys.argv[1]},
            data_root_dir=sys.argv[2])
        c1 = SimpleComponent(ParameterSet({'a': 2, 'b': {'c': 4.5}}))
        c2 = SimpleComponent(ParameterSet({'x': 1}), input=c1)
        assert datastore.retrieve(c2, 'data') is None
        datastore.store(c1, 'data', list(range(0, 10, 2)))
        datastore.store(c2, 'data', {'derived': True})
        assert datastore.retrieve(c1, 'data') == [0, 2, 4, 6, 8]
        assert datastore.retrieve(c2, 'data') == {'derived': True}
        c1.parameters.a = 3
        assert datastore.retrieve(c2, 'data') is None
        print(len(datastore.list_contents()))
        """,
        str(tmp_path / "legacy.db"),
        str(tmp_path / "data"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"
    assert len(list((tmp_path / "data").rglob("*.rec"))) == 2


# -- several databases, payload files ----------------------------------------------------------


@pytest.mark.anyio
async def test_two_stores_on_two_databases_keep_their_data_apart(tmp_path: Path) -> None:
    with fresh_database("postgresql") as postgresql:
        first = AsyncDjangoORMDataStore({"ENGINE": "sqlite3", "NAME": str(tmp_path / "a.db")})
        second = AsyncDjangoORMDataStore(postgresql)
        async with first, second:
            assert first.alias != second.alias
            c = SimpleComponent({"same": "component"})
            await first.store(c, "v", "in sqlite")
            await second.store(c, "v", "in postgresql")
            assert await first.retrieve(c, "v") == "in sqlite"
            assert await second.retrieve(c, "v") == "in postgresql"
            await first.delete(c)
            assert await second.retrieve(c, "v") == "in postgresql"
            assert len(await second.list_contents()) == 1


@pytest.mark.anyio
async def test_payload_files_under_data_root_dir(tmp_path: Path) -> None:
    root = tmp_path / "payloads"
    database = {"ENGINE": "sqlite3", "NAME": str(tmp_path / "index.db")}
    array = np.random.default_rng(3).standard_normal(3_000_000)  # 24 MB
    c = SimpleComponent({"big": 1})
    async with AsyncDjangoORMDataStore(database, root) as store:
        await store.store(c, "array", array)
        await store.store(c, ".hidden", "small")
        np.testing.assert_array_equal(await store.retrieve(c, "array"), array)
        assert await store.retrieve(c, ".hidden") == "small"
        files = sorted(root.rglob("*.rec"))
        assert len(files) == 2
        assert all(f.resolve().is_relative_to(root.resolve()) for f in files)
        assert await store.delete(c, "array") == 1
        assert len(sorted(root.rglob("*.rec"))) == 1
    async with AsyncDjangoORMDataStore(database) as without_root:
        with pytest.raises(ConfigurationError, match="data_root_dir"):
            await without_root.retrieve(c, ".hidden")


# -- many processes on one PostgreSQL database -------------------------------------------------

WRITER = """
import json, sys
from adatastore import DjangoORMDataStore
from components import SimpleComponent
store = DjangoORMDataStore(json.loads(sys.argv[1]))
me = int(sys.argv[2])
for i in range(300):
    store.store(SimpleComponent({"process": me, "i": i}), "value", (me, i))
    # every process also writes the same 20 entries: overlapping keys
    store.store(SimpleComponent({"shared": i % 20}), "value", ("shared", i % 20, me))
store.close()
"""


def test_four_processes_storing_to_one_postgresql_database() -> None:
    import json

    with fresh_database("postgresql") as database:
        DjangoORMDataStore(database).close()  # migrate once, as a deployment would
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(WRITER), json.dumps(database), str(n)],
                env=subprocess_env(),
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(4)
        ]
        errors = [p.communicate(timeout=600)[1] for p in processes]
        assert [p.returncode for p in processes] == [0, 0, 0, 0], errors
        assert errors == ["", "", "", ""]
        with DjangoORMDataStore(database) as store:
            for me in range(4):
                for i in range(300):
                    value = store.retrieve(SimpleComponent({"process": me, "i": i}), "value")
                    assert value == (me, i)
            for k in range(20):
                kind, key, _writer = store.retrieve(SimpleComponent({"shared": k}), "value")
                assert (kind, key) == ("shared", k)
            assert len(store.list_contents()) == 4 * 300 + 20
        import psycopg

        with contextlib.closing(
            psycopg.connect(host="127.0.0.1", user="postgres", dbname=database["NAME"])
        ) as db:
            counts = db.execute(
                "SELECT count(*), count(DISTINCT (state_id, attribute)) FROM adatastore_dataitem"
            ).fetchone()
            assert counts is not None
            items, distinct = counts
            counts = db.execute(
                "SELECT count(*), count(DISTINCT key_digest) FROM adatastore_componentstate"
            ).fetchone()
            assert counts is not None
            states, keys = counts
        assert items == distinct == 1220
        assert states == keys == 1220


@pytest.mark.slow
def test_processes_racing_to_create_the_tables(tmp_path: Path) -> None:
    """Four processes open a brand-new database at once: migrations must not collide."""
    import json

    with fresh_database("postgresql") as database:
        code = """
            import json, sys
            from adatastore import DjangoORMDataStore
            from components import SimpleComponent
            store = DjangoORMDataStore(json.loads(sys.argv[1]))
            store.store(SimpleComponent({"me": int(sys.argv[2])}), "v", 1)
            store.close()
            """
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(code), json.dumps(database), str(n)],
                env=subprocess_env(),
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(4)
        ]
        errors = [p.communicate(timeout=300)[1] for p in processes]
        assert [p.returncode for p in processes] == [0, 0, 0, 0], errors
        with DjangoORMDataStore(database) as store:
            assert len(store.list_contents()) == 4


# -- inside a Django project -------------------------------------------------------------------

PROJECT_SETTINGS = """
SECRET_KEY = "test"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
ROOT_URLCONF = "project_urls"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    {app}
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {{"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]}},
}}]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
"""

PROJECT_URLS = """
from django.contrib import admin
from django.urls import path
urlpatterns = [path("admin/", admin.site.urls)]
"""

IN_PROJECT = """
import os, sys
sys.path.insert(0, sys.argv[1])
os.environ["DJANGO_SETTINGS_MODULE"] = "project_settings"
import django
django.setup()
from django.core.management import call_command
from adatastore import DjangoORMDataStore
from adatastore.errors import ConfigurationError
from components import SimpleComponent

try:
    DjangoORMDataStore()
except ConfigurationError as error:
    print("before migrate:", error)
call_command("migrate", verbosity=0)
store = DjangoORMDataStore()          # the project's 'default' database
store.store(SimpleComponent({"rate": 5}), "spikes", [1, 2, 3])
store.store(SimpleComponent({"rate": 6}), "membrane_potential", [0.5])
assert store.retrieve(SimpleComponent({"rate": 5}), "spikes") == [1, 2, 3]

from django.contrib.auth.models import User
from django.test import Client
User.objects.create_superuser("admin", "a@example.org", "pw")
client = Client()
client.force_login(User.objects.get(username="admin"))
page = client.get("/admin/adatastore/dataitem/")
print("admin status", page.status_code)
html = page.content.decode()
for text in ("spikes", "membrane_potential", "components.SimpleComponent"):
    print(text, text in html)
print("add allowed", client.get("/admin/adatastore/dataitem/add/").status_code)
"""


def _project(tmp_path: Path, with_app: bool) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    app = '"adatastore.backends.django",' if with_app else ""
    (project / "project_settings.py").write_text(
        PROJECT_SETTINGS.format(app=app, db=str(tmp_path / "project.db"))
    )
    (project / "project_urls.py").write_text(PROJECT_URLS)
    return project


@pytest.mark.slow
def test_inside_a_django_project_with_admin(tmp_path: Path) -> None:
    result = run_python(IN_PROJECT, str(_project(tmp_path, with_app=True)))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("before migrate:")
    assert "manage.py migrate" in lines[0]
    assert lines[1:] == [
        "admin status 200",
        "spikes True",
        "membrane_potential True",
        "components.SimpleComponent True",
        "add allowed 403",
    ]


def test_a_project_without_the_app_is_told_what_to_add(tmp_path: Path) -> None:
    result = run_python(
        """
        import os, sys
        sys.path.insert(0, sys.argv[1])
        os.environ["DJANGO_SETTINGS_MODULE"] = "project_settings"
        import django
        django.setup()
        from adatastore import DjangoORMDataStore
        from adatastore.errors import ConfigurationError
        try:
            DjangoORMDataStore()
        except ConfigurationError as error:
            print(error)
        """,
        str(_project(tmp_path, with_app=False)),
    )
    assert result.returncode == 0, result.stderr
    assert "add 'adatastore.backends.django' to INSTALLED_APPS" in result.stdout


# -- importing without Django, URLs ------------------------------------------------------------


def test_import_adatastore_does_not_import_django() -> None:
    result = run_python(
        """
        import sys
        import adatastore
        print("django" in sys.modules)
        sys.modules["django"] = None   # as if the extra were not installed
        for name in list(sys.modules):
            if name.startswith("adatastore.backends.django"):
                del sys.modules[name]
        try:
            adatastore.DjangoORMDataStore({"ENGINE": "sqlite3", "NAME": "x.db"})
        except adatastore.ConfigurationError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first == "False"
    assert "pip install 'adatastore[django]'" in second


@pytest.mark.anyio
async def test_django_urls(tmp_path: Path) -> None:
    async with await open_store(f"django+sqlite:///{tmp_path}/u.db") as store:
        assert isinstance(store, AsyncDjangoORMDataStore)
        await store.store(SimpleComponent({}), "v", 1)
        assert await store.retrieve(SimpleComponent({}), "v") == 1
    with fresh_database("postgresql") as database:
        url = f"django+postgresql://postgres@127.0.0.1:5432/{database['NAME']}"
        async with await open_store(f"{url}?data_root_dir={tmp_path}/pg-data") as store:
            await store.store(SimpleComponent({}), "v", 2)
            assert await store.retrieve(SimpleComponent({}), "v") == 2
        assert list((tmp_path / "pg-data").rglob("*.rec"))
    with pytest.raises(ConfigurationError, match="needs a host and a database name"):
        await open_store("django+postgresql://")


def test_django_mariadb_url_blocking() -> None:
    with (
        fresh_database("mariadb") as database,
        open_store_sync(f"django+mariadb://root@127.0.0.1/{database['NAME']}") as store,
    ):
        store.store(SimpleComponent({}), "v", 3)
        assert store.retrieve(SimpleComponent({}), "v") == 3


def test_shipped_migrations_match_the_models() -> None:
    result = run_python(
        """
        import django
        from django.conf import settings
        settings.configure(
            INSTALLED_APPS=["adatastore.backends.django"], USE_TZ=True,
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        )
        django.setup()
        from django.core.management import call_command
        call_command("makemigrations", "adatastore", check=True, dry_run=True)
        """
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout


@pytest.mark.anyio
async def test_connections_are_reused_and_closed(tmp_path: Path) -> None:
    """Django's async ORM runs in a worker thread: one connection, closed by aclose."""
    import psycopg

    def connections_to(name: str) -> int:
        with contextlib.closing(
            psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres")
        ) as admin:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchone()
        assert row is not None
        return int(row[0])

    with fresh_database("postgresql") as database:
        store = AsyncDjangoORMDataStore(database)
        async with store:
            for i in range(100):
                await store.store(SimpleComponent({"i": i}), "v", i)
                assert await store.retrieve(SimpleComponent({"i": i}), "v") == i
            assert connections_to(database["NAME"]) == 1
        assert connections_to(database["NAME"]) == 0


AT_0002 = """
import os, sys
sys.path.insert(0, sys.argv[1])
os.environ["DJANGO_SETTINGS_MODULE"] = "project_settings"
import django
django.setup()
from django.core.management import call_command
from adatastore import DjangoORMDataStore
from adatastore.errors import ConfigurationError
from components import SimpleComponent

call_command("migrate", "adatastore", "0002", verbosity=0)  # as an 0.3 project left it
try:
    DjangoORMDataStore()
except ConfigurationError as error:
    print("at 0002:", error)
call_command("migrate", verbosity=0)
store = DjangoORMDataStore(max_entries=2)
for rate in (1, 2, 3):
    store.store(SimpleComponent({"rate": rate}), "spikes", [rate])
print("kept", len(store.list_contents()))
"""


def test_a_project_at_an_older_migration_is_told_to_migrate(tmp_path: Path) -> None:
    """A project that upgraded adatastore without migrating gets a clear error at open
    (not a failed write later: 0003 adds the ``used_at`` column the limits need)."""
    result = run_python(AT_0002, str(_project(tmp_path, with_app=True)))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("at 0002:")
    assert "manage.py migrate adatastore" in lines[0]
    assert lines[1] == "kept 1"  # 3 stored into max_entries=2: down to 90%, 1
