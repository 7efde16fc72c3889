"""Hostile storage and hostile input: one test per attack of issue 13.

Anyone who can write to a shared store (a group-writable directory, a shared database)
plants links, special files, crafted rows and records. Each test asserts that nothing
outside the store changed (a sentinel directory is compared before and after), that no
call hangs (every call runs under a deadline), and that what comes out is a named error.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import s3server
from components import PlainComponent, SimpleComponent
from helpers import StoreFactory, run_python, subprocess_env
from servers import fresh_database

import adatastore
from adatastore import (
    AsyncDjangoORMDataStore,
    AsyncObjectDataStore,
    AsyncShelveDataStore,
    AsyncSQLiteDataStore,
    keygenerators,
)
from adatastore._codec import record as _record
from adatastore._storage import naming as _naming
from adatastore.backends._bucket_payloads import BucketPayloads
from adatastore.errors import (
    ComponentError,
    ConfigurationError,
    CorruptEntryError,
    DataStoreError,
    IntegrityError,
    StorageError,
    UnhashableParameterError,
)

DEADLINE = 10  # seconds any one call may take: a hang fails, it does not wait


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[Path]:
    """A directory outside every store, with a file in it; unchanged at the end."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("do not touch")
    before = _snapshot(outside)
    yield outside
    assert _snapshot(outside) == before, "something outside the store changed"


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes() if path.is_file() else b"<dir>"
        for path in sorted(directory.rglob("*"))
    }


def entry_dir(store: AsyncShelveDataStore, component: object) -> Path:
    return Path(store.root_dir, _naming.encode_name(store.key_of(component)))


def record_file(store: AsyncShelveDataStore, component: object, name: str) -> Path:
    return entry_dir(store, component) / (_naming.encode_name(name) + ".rec")


# -- the files back-end never follows what is planted ----------------------------------------


@pytest.mark.anyio
async def test_an_entry_directory_planted_as_a_link(tmp_path: Path, sentinel: Path) -> None:
    """Keys are deterministic: an attacker plants the victim's entry as a link to a
    directory outside the store. Nothing is written or deleted there."""
    victim = SimpleComponent({"victim": 1})
    async with AsyncShelveDataStore(tmp_path / "store") as store:
        entry_dir(store, victim).symlink_to(sentinel, target_is_directory=True)
        with anyio.fail_after(DEADLINE):
            with pytest.raises(StorageError, match="symbolic link"):
                await store.store(victim, "v", "secret")
            with pytest.raises(CorruptEntryError, match="symbolic link"):
                await store.retrieve(victim, "v")
            assert await store.contains(victim, "v")  # something is there: damage
            report = await store.verify()
            assert not report.ok
            assert any("symbolic link" in item.reason for item in report.damaged)
            repaired = await store.verify(repair=True)
            assert repaired.removed == 1
        assert not entry_dir(store, victim).exists()  # the link went, its target did not
        await store.store(victim, "v", "secret")
        assert await store.retrieve(victim, "v") == "secret"


@pytest.mark.anyio
async def test_delete_removes_a_planted_link_not_its_target(tmp_path: Path, sentinel: Path) -> None:
    victim = SimpleComponent({"victim": 2})
    async with AsyncShelveDataStore(tmp_path / "store") as store:
        await store.store(SimpleComponent({"other": 1}), "v", 1)
        entry_dir(store, victim).symlink_to(sentinel, target_is_directory=True)
        with anyio.fail_after(DEADLINE):
            assert await store.delete(victim) == 0
        assert not entry_dir(store, victim).is_symlink()


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["fifo", "link", "dangling link", "directory"])
async def test_a_record_replaced_by_something_else(
    tmp_path: Path, sentinel: Path, kind: str
) -> None:
    """A FIFO used to hang every reader forever; a link was followed. Reads report it;
    `get_or_compute` computes the value again in its place (a FIFO or link replaced, its
    target untouched), or raises where it cannot (a directory) or is told to."""

    def plant(store: AsyncShelveDataStore) -> Path:
        path = record_file(store, c, "v")
        path.unlink()
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "link":
            path.symlink_to(sentinel / "precious.txt")
        elif kind == "dangling link":
            path.symlink_to(sentinel / "nothing-here")
        else:
            path.mkdir()
        return path

    c = SimpleComponent({"c": 1})
    async with AsyncShelveDataStore(tmp_path / "store", on_bad_entry="raise") as store:
        await store.store(c, "v", "value")
        path = plant(store)
        with anyio.fail_after(DEADLINE):
            with pytest.raises(CorruptEntryError):
                await store.retrieve(c, "v")
            with pytest.raises(CorruptEntryError):
                await store.get_or_compute(c, "v", lambda: "recomputed")
            report = await store.verify(repair=True)
        assert [item.attribute_name for item in report.damaged] == ["v"]
        if kind != "directory":  # the link or FIFO itself is gone
            assert not os.path.lexists(path)
    async with AsyncShelveDataStore(tmp_path / "again") as store:
        await store.store(c, "v", "value")
        path = plant(store)
        with anyio.fail_after(DEADLINE):
            if kind == "directory":
                with pytest.raises(DataStoreError):
                    await store.get_or_compute(c, "v", lambda: "recomputed")
            else:
                assert await store.get_or_compute(c, "v", lambda: "recomputed") == "recomputed"
                assert await store.retrieve(c, "v") == "recomputed"
                assert path.is_file()
                assert not path.is_symlink()
                assert store.stats.recomputed_bad == 1


@pytest.mark.anyio
async def test_metadata_planted_as_a_link_is_reported(tmp_path: Path, sentinel: Path) -> None:
    c = SimpleComponent({"c": 1})
    async with AsyncShelveDataStore(tmp_path / "store") as store:
        await store.store(c, "v", "value")
        meta = entry_dir(store, c) / "component.json"
        meta.unlink()
        meta.symlink_to(sentinel / "precious.txt")
        with anyio.fail_after(DEADLINE):
            report = await store.verify(repair=True)
        assert any("component.json" in (item.path or "") for item in report.damaged)
        assert not meta.is_symlink()


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["files", "sqlite"])
async def test_a_dangling_link_at_the_lock_file(
    tmp_path: Path, sentinel: Path, backend: str
) -> None:
    """get_or_compute used to create the link's target anywhere the victim could write."""
    target = sentinel / "created-by-the-victim"
    store: adatastore.AsyncDataStore
    if backend == "files":
        store = AsyncShelveDataStore(tmp_path / "store")
        lock = tmp_path / "store" / ".lock"
        (tmp_path / "store").mkdir()
    else:
        store = AsyncSQLiteDataStore(tmp_path / "store.db")
        lock = tmp_path / "store.db-lock"
    lock.symlink_to(target)
    async with store:
        with anyio.fail_after(DEADLINE), pytest.raises(StorageError, match="symbolic link"):
            await store.get_or_compute(SimpleComponent({"c": 1}), "v", lambda: 1)
        if backend == "files":
            assert isinstance(store, AsyncShelveDataStore)
            report = await store.verify(repair=True)
            assert not report.ok
            assert not lock.is_symlink()
    assert not target.exists()


@pytest.mark.anyio
@pytest.mark.asyncio_only  # Django runs on asyncio
@pytest.mark.parametrize("backend", ["sqlite", "django"])
async def test_a_payload_directory_planted_as_a_link(
    tmp_path: Path, sentinel: Path, backend: str
) -> None:
    """SQLite's <db>-payloads or Django's data_root_dir/records planted as a link: large
    records are refused, never written to the link's target."""
    store: adatastore.AsyncDataStore
    if backend == "sqlite":
        (tmp_path / "store.db-payloads").symlink_to(sentinel, target_is_directory=True)
        store = AsyncSQLiteDataStore(tmp_path / "store.db")
    else:
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "records").symlink_to(sentinel, target_is_directory=True)
        store = AsyncDjangoORMDataStore(
            {"ENGINE": "sqlite3", "NAME": str(tmp_path / "d.db")}, tmp_path / "data"
        )
    c = SimpleComponent({"c": 1})
    async with store:
        with anyio.fail_after(DEADLINE), pytest.raises(StorageError, match="symbolic link"):
            await store.store(c, "v", b"x" * 300_000)
        assert await store.retrieve(c, "v") is None
        if backend == "sqlite":
            await store.store(c, "small", 1)  # what stays in the database still works
            assert await store.retrieve(c, "small") == 1


# -- names from databases are names, not paths -----------------------------------------------


def _sqlite_rows(path: Path, sql: str, *args: object) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(sql, args)


@pytest.mark.anyio
@pytest.mark.parametrize("planted", ["ABSOLUTE", "../../outside/precious.txt", "x/../../y.rec"])
async def test_sqlite_rows_naming_paths(tmp_path: Path, sentinel: Path, planted: str) -> None:
    """A row's `file` (or `garbage`) naming a path used to be read, then unlinked."""
    planted = str(sentinel / "precious.txt") if planted == "ABSOLUTE" else planted
    path = tmp_path / "store.db"
    c = SimpleComponent({"c": 1})
    async with AsyncSQLiteDataStore(path) as store:
        await store.store(c, "v", b"x" * 200_000)  # a payload file
    _sqlite_rows(path, "UPDATE entries SET file = ?", planted)
    _sqlite_rows(path, "INSERT INTO garbage (file) VALUES (?)", planted)
    with anyio.fail_after(DEADLINE):
        async with AsyncSQLiteDataStore(path) as store:  # open collects garbage
            with pytest.raises(CorruptEntryError, match="not a name adatastore makes"):
                await store.retrieve(c, "v")
            report = await store.verify(repair=True)
            assert len(report.damaged) == 1
            assert report.removed == 1
            await store.store(c, "w", b"y" * 200_000)
            await store.delete(c)
            await store.cleanup(older_than=0)


@pytest.mark.anyio
@pytest.mark.asyncio_only  # Django runs on asyncio
@pytest.mark.parametrize("planted", ["ABSOLUTE", "../outside/precious.txt", "records/x/../../y"])
async def test_django_rows_naming_paths(tmp_path: Path, sentinel: Path, planted: str) -> None:
    planted = str(sentinel / "precious.txt") if planted == "ABSOLUTE" else planted
    database = {"ENGINE": "sqlite3", "NAME": str(tmp_path / "django.db")}
    c = SimpleComponent({"c": 1})
    async with AsyncDjangoORMDataStore(database, tmp_path / "data") as store:
        await store.store(c, "v", b"x" * 1000)
    _sqlite_rows(tmp_path / "django.db", "UPDATE adatastore_dataitem SET path = ?", planted)
    with anyio.fail_after(DEADLINE):
        async with AsyncDjangoORMDataStore(database, tmp_path / "data") as store:
            with pytest.raises(CorruptEntryError, match="not a name adatastore makes"):
                await store.retrieve(c, "v")
            report = await store.verify(repair=True)
            assert report.removed == 1
            await store.cleanup(older_than=0)


# -- crafted records: one named error, whatever the bytes --------------------------------------


def craft(header: dict[str, Any] | bytes, payload: bytes = b"", provenance: bytes = b"") -> bytes:
    """A record with a valid magic number and header checksum around any header."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    if provenance:
        raw += b"\0" + provenance
    prefix = struct.pack("<4sII", b"ADS1", len(raw), zlib.crc32(raw))
    body = prefix + raw
    return body + bytes(-len(body) % 64) + payload


GOOD = {"serializer": "pickle", "attribute": "v", "lengths": [0], "xxh3": 0}
CRAFTED: dict[str, dict[str, Any] | bytes] = {
    "hmac not ASCII": {**GOOD, "hmac": "é" * 64},
    "hmac not a string": {**GOOD, "hmac": 12},
    "digest 1e400": b'{"serializer":"pickle","attribute":"v","lengths":[0],"xxh3":1e400}',
    "length 1e400": b'{"serializer":"pickle","attribute":"v","lengths":[1e400],"xxh3":0}',
    "huge length": {**GOOD, "lengths": [2**70]},
    "negative length": {**GOOD, "lengths": [-1]},
    "deep nesting": b'{"serializer":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "lengths a dict": {**GOOD, "lengths": {"a": 1}},
    "not an object": b"[1, 2, 3]",
    "attribute a list": {**GOOD, "attribute": ["v"]},
    "bool length": {**GOOD, "lengths": [True]},
    "no digest": {"serializer": "pickle", "attribute": "v", "lengths": [0]},
    "huge digit string": b'{"serializer":"pickle","attribute":"v","lengths":[0],"xxh3":'
    + b"9" * 5000
    + b"}",
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_a_crafted_header_is_damage(name: str) -> None:
    with pytest.raises(_record.DamagedRecord):
        _record.unseal(craft(CRAFTED[name]))


@pytest.mark.anyio
async def test_crafted_records_in_a_store(make_store: StoreFactory) -> None:
    """retrieve raises CorruptEntryError (IntegrityError when signing) for each; verify
    reports every one and runs to the end."""
    components = {name: PlainComponent({"crafted": name}) for name in CRAFTED}
    async with make_store() as store:
        for component in components.values():
            await store.store(component, "v", 1)
        for name, component in components.items():
            await _replace_record(store, component, "v", craft(CRAFTED[name]))
        with anyio.fail_after(DEADLINE * 3):
            for component in components.values():
                with pytest.raises(CorruptEntryError):
                    await store.retrieve(component, "v")
            values = [store.retrieve_many([(c, "v")]) for c in components.values()]
            for call in values:
                with pytest.raises(CorruptEntryError):
                    await call
            report = await store.verify(repair=True)
    assert len(report.damaged) == len(CRAFTED)
    assert report.removed == len(CRAFTED)


async def _replace_record(store: Any, component: object, name: str, data: bytes) -> None:
    """Put `data` in place of a stored record, as an attacker with write access would."""
    key = store.key_of(component)
    if isinstance(store, AsyncShelveDataStore):
        record_file(store, component, name).write_bytes(data)
    elif isinstance(store, AsyncSQLiteDataStore):
        _sqlite_rows(
            store.path,
            "UPDATE entries SET payload = ? WHERE key = ? AND attribute = ?",
            data,
            key,
            name,
        )
    elif isinstance(store, AsyncDjangoORMDataStore):
        import hashlib

        digest = hashlib.sha256(key.encode()).hexdigest()

        def update() -> str | None:
            from adatastore.backends.django.models import DataItem

            items = DataItem.objects.using(store.alias).filter(
                state__key_digest=digest, attribute=name
            )
            items.update(payload=data)
            path: str | None = items.values_list("path", flat=True).first()
            return path

        path = await store.backend._orm(update)
        payloads = store.backend._files.bucket
        if path is not None and payloads is not None:  # the record is an object
            bucket = BucketPayloads(payloads)
            object_name = f"{bucket.prefix}/{path}"
            await anyio.to_thread.run_sync(lambda: bucket.bucket.put(object_name, data))
    elif isinstance(store, AsyncObjectDataStore):
        backend = store.backend
        await anyio.to_thread.run_sync(
            lambda: backend.objects.client.put_object(
                Bucket=backend.bucket, Key=backend.record_name(key, name), Body=data
            )
        )
    else:  # memory
        store.backend.records[key][name] = (data, store.backend.records[key][name][1])


# -- provenance is parsed and printed with care -------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "provenance",
    [b'{"stored_at": "soon"}', b"{}", b"[]", b"{" * 50_000, b'{"stored_at": 1e400}'],
)
async def test_odd_provenance_does_not_break_explain(tmp_path: Path, provenance: bytes) -> None:
    import pickle

    import xxhash

    c = SimpleComponent({"c": 1})
    payload = pickle.dumps("value", protocol=5)
    header = {
        "serializer": "pickle",
        "attribute": "v",
        "lengths": [len(payload)],
        "xxh3": xxhash.xxh3_64_intdigest(payload),
    }
    async with AsyncShelveDataStore(tmp_path / "store") as store:
        await store.store(c, "v", "x")
        record_file(store, c, "v").write_bytes(craft(header, payload, provenance))
        assert await store.retrieve(c, "v") == "value"
        explained = await store.explain(c, "v")
    assert explained.hit
    assert explained.provenance is None
    result = _cli("show", store.key_of(c)[:12], "--url", f"file://{tmp_path / 'store'}")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_tools_escape_control_characters_in_stored_strings(tmp_path: Path) -> None:
    """A host name, attribute or parameter holding terminal escapes is shown escaped."""
    url = f"file://{tmp_path / 'store'}"
    c = PlainComponent({"title": "\x1b]0;owned\x07\x1b[31mred"})
    with adatastore.open_store_sync(url) as store:
        store.store(c, "v\u202eevil", 1)
        key = store.key_of(c)
    for command in (["ls"], ["show", key[:12]], ["ls", "--json"], ["stats"], ["verify"]):
        result = _cli(*command, "--url", url)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout
        assert "\u202e" not in result.stdout
    shown = _cli("show", key[:12], "--url", url).stdout
    assert "\\u001b]0;owned" in shown  # shown, escaped
    assert "v\\u202eevil" in shown


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adatastore", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
        check=False,
    )


# -- names are exact on every database ----------------------------------------------------------

SIMILAR = ["Spikes", "spikes", "rate", "rate ", "resume", "résumé"]


@pytest.mark.anyio
async def test_names_that_differ_by_case_accent_or_spaces(make_store: StoreFactory) -> None:
    """MariaDB's default collation merged these (the second overwrote the first's row)."""
    c = SimpleComponent({"c": 1})
    async with make_store() as store:
        for number, name in enumerate(SIMILAR):
            await store.store(c, name, number)
        values = [await store.retrieve(c, name) for name in SIMILAR]
        listed = sorted(entry.attribute_name for entry in await store.list_contents())
    assert values == list(range(len(SIMILAR)))
    assert listed == sorted(SIMILAR)


def test_an_existing_mariadb_store_is_converted() -> None:
    """Tables made by 0.2.0 (default collation) get exact names from migration 0002."""
    with fresh_database("mariadb") as database:
        code = textwrap.dedent(
            """
            import json, sys
            import django
            from django.conf import settings
            database = json.loads(sys.argv[1])
            settings.configure(DATABASES={"default": {**database}},
                               INSTALLED_APPS=["adatastore.backends.django"])
            import pymysql; pymysql.version_info = (2, 2, 1, "final", 0)
            pymysql.install_as_MySQLdb()
            django.setup()
            from django.core.management import call_command
            call_command("migrate", "adatastore", "0001", verbosity=0)
            from django.db import connection
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE "
                    "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'adatastore_dataitem' "
                    "AND COLUMN_NAME = 'attribute'")
                print(cursor.fetchone()[0])
            call_command("migrate", "adatastore", verbosity=0)
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE "
                    "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'adatastore_dataitem' "
                    "AND COLUMN_NAME = 'attribute'")
                print(cursor.fetchone()[0])
            """
        )
        result = run_python(code, json.dumps(database))
    assert result.returncode == 0, result.stderr[-3000:]
    before, after = result.stdout.split()
    assert not before.endswith("_bin")
    assert after.endswith("_bin")


# -- URLs and arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "django+postgresql://user:s3cret@host:99999/db",
        "django+postgresql://user:s3cret@host:abc/db",
        "sqlite:///x.db?busy_timeout=nan",
        "sqlite:///x.db?busy_timeout=inf",
        "sqlite:///x.db?busy_timeout=-1",
        "sqlite:///x%00.db",
        "django+postgresql://user:s3cret@host/db?bogus=1",
        "file://user:s3cret@elsewhere/x",
    ],
)
def test_malformed_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        adatastore.open_store_sync(url)
    assert "s3cret" not in str(caught.value)
    result = _cli("ls", "--url", url)
    assert result.returncode == 2
    assert result.stderr.startswith("adatastore: error:")
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "arguments",
    [["prune", "--older-than", "999999999999d"], ["prune", "--max-size", "1e400GB"]],
)
def test_out_of_range_arguments_are_usage_errors(tmp_path: Path, arguments: list[str]) -> None:
    result = _cli(*arguments, "--url", f"file://{tmp_path}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


# -- no wrong hit from any key generator ---------------------------------------------------------

COLLIDING = [
    ({"a": {"b": 1}}, {"a.b": 1}),
    ({"a": 1, "b": 2}, {"a=1_b": 2}),
    ({1: "x"}, {"1": "x"}),
    ({"a": {}, "b": 1}, {"b": 1}),
]


@pytest.mark.parametrize(("one", "two"), COLLIDING)
@pytest.mark.parametrize(
    "generator",
    [keygenerators.hash_pickle, keygenerators.join_with_underscores, keygenerators.canonical_hash],
)
def test_no_two_parameter_sets_share_a_key(
    one: dict[Any, Any], two: dict[Any, Any], generator: Any
) -> None:
    keys = []
    for parameters in (one, two):
        try:
            keys.append(generator(PlainComponent(parameters)))
        except UnhashableParameterError:
            keys.append(None)  # refused, never confused
    assert keys[0] is None or keys[0] != keys[1]


def test_ordinary_parameter_sets_keep_their_0_2_keys() -> None:
    """Keys of parameter sets that were never ambiguous are those 0.2.0 made."""
    import hashlib
    import pickle

    c = SimpleComponent({"n": 100, "tau_m": 20.0, "weights": {"mean": 0.3, "std": 0.1}})
    flat = [("n", 100), ("tau_m", 20.0), ("weights.mean", 0.3), ("weights.std", 0.1)]
    state: tuple[Any, ...] = ("components.SimpleComponent", "$Revision: 1 $", flat, [])  # 0.2.0
    assert keygenerators.hash_pickle(c) == hashlib.sha1(pickle.dumps(state, protocol=4)).hexdigest()
    assert keygenerators.join_with_underscores(c) == (
        "components.SimpleComponent-r$Revision: 1 $_n=100_tau_m=20.0_weights.mean=0.3_"
        "weights.std=0.1"
    )


# -- every bad parameter is a named error, or stored losslessly ---------------------------------


@pytest.mark.anyio
async def test_bad_parameters_on_every_backend(make_store: StoreFactory) -> None:
    lone = PlainComponent({"name": "file\udcff"}, version="v\udc80")
    other = PlainComponent({"name": "file\udcfe"}, version="v\udc80")
    huge = PlainComponent({"n": 10**5000})
    async with make_store() as store:
        for component in (lone, huge):
            await store.store(component, "v", "stored")
            assert await store.retrieve(component, "v") == "stored"
        assert await store.retrieve(other, "v") is None  # another surrogate, another key
        assert len(await store.list_contents()) == 2
        assert (await store.explain(lone, "v")).hit
        for bad, error in (
            (PlainComponent({"x": float("nan")}), UnhashableParameterError),
            (PlainComponent({"f": lambda: 1}), UnhashableParameterError),
            (PlainComponent({"n": 1}, input=[None]), ComponentError),
        ):
            with pytest.raises(error):
                await store.store(bad, "v", 1)
        assert len(await store.list_contents()) == 2  # nothing written by the refusals


def test_an_error_inside_a_components_own_property_is_itself() -> None:
    class Broken:
        input = None
        version = 1

        @property
        def parameters(self) -> dict[str, int]:
            return self.typo  # type: ignore[attr-defined,no-any-return]

    with pytest.raises(AttributeError, match="typo"):
        keygenerators.canonical_hash(Broken())


def test_tools_show_every_parameter_of_the_key(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    c = PlainComponent({1: "int one", "1": "str one"})  # type: ignore[dict-item]
    with adatastore.open_store_sync(url) as store:
        store.store(c, "v", 1)
        key = store.key_of(c)
    shown = _cli("show", key[:12], "--url", url).stdout
    assert "int one" in shown
    assert "str one" in shown


# -- big and deep inputs -------------------------------------------------------------------------


def chain(length: int) -> list[SimpleComponent]:
    steps: list[SimpleComponent] = []
    for step in range(length):
        steps.append(SimpleComponent({"step": step}, input=steps[-1] if steps else None))
    return steps


@pytest.mark.anyio
@pytest.mark.slow
async def test_explain_along_a_long_chain(tmp_path: Path) -> None:
    """A chain of 1,500 time steps: explain answers (it was quadratic), and the command's
    explain --input rebuilds the chain without recursing."""
    steps = chain(1500)
    async with AsyncSQLiteDataStore(tmp_path / "s.db") as store:
        await store.store_many([(step, "state", step.parameters["step"]) for step in steps])
        asked = SimpleComponent({"step": 1500}, input=steps[-1])
        with anyio.fail_after(DEADLINE * 3):
            explained = await store.explain(asked, "state")
        last = store.key_of(steps[-1])
    assert not explained.hit
    assert explained.candidates
    result = _cli(
        "explain",
        "state",
        "--type",
        "components.SimpleComponent",
        "--version",
        "$Revision: 1 $",
        "--parameters",
        '{"step": 1500}',
        "--input",
        last[:16],
        "--url",
        f"sqlite:///{tmp_path / 's.db'}",
    )
    assert result.returncode == 1, result.stderr  # a miss, explained
    assert "RecursionError" not in result.stderr


def test_a_shared_dag_is_rebuilt_as_a_dag() -> None:
    from adatastore.cli._explain import rebuild as _rebuild
    from adatastore.store import ComponentRecord

    known: dict[str, ComponentRecord] = {}
    previous: tuple[str, ...] = ()
    for level in range(40):  # each level uses the one below twice: 2**40 paths
        key = f"k{level}"
        known[key] = ComponentRecord(key, "m.T", "1", {"level": level}, previous * 2)
        previous = (key,)
    top = _rebuild(known, known["k39"])
    seen: set[int] = set()
    stack = [top]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        inputs = node.input if isinstance(node.input, list) else [node.input]
        stack.extend(item for item in inputs if item is not None)
    assert len(seen) == 40


# -- damage that used to hide --------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.asyncio_only  # Django runs on asyncio
@pytest.mark.parametrize("backend", ["sqlite", "django"])
async def test_a_missing_record_file_is_seen(tmp_path: Path, backend: str) -> None:
    c = SimpleComponent({"c": 1})
    store: adatastore.AsyncDataStore
    if backend == "sqlite":
        store = AsyncSQLiteDataStore(tmp_path / "s.db")
    else:
        store = AsyncDjangoORMDataStore(
            {"ENGINE": "sqlite3", "NAME": str(tmp_path / "d.db")}, tmp_path / "data"
        )
    async with store:
        await store.store(c, "v", b"x" * 300_000)
        (record,) = [p for p in tmp_path.rglob("*.rec") if ".tmp" not in p.parts]
        record.unlink()
        assert await store.contains(c, "v")
        with pytest.raises(CorruptEntryError, match="missing"):
            await store.retrieve(c, "v")
        report = await store.verify()
    assert len(report.damaged) == 1


def test_a_value_too_large_for_mariadb_says_so() -> None:
    with fresh_database("mariadb") as database:
        code = textwrap.dedent(
            """
            import json, sys
            import adatastore
            from adatastore.errors import StorageError
            from components import SimpleComponent
            store = adatastore.DjangoORMDataStore(json.loads(sys.argv[1]))
            try:
                store.store(SimpleComponent({"big": 1}), "v", b"x" * 40_000_000)
            except StorageError as error:
                print("refused", "max_allowed_packet" in str(error), "data_root_dir" in str(error))
            from adatastore._runtime import portal as _portal
            print("components", len(_portal.call(store.async_store.backend.components, None)))
            """
        )
        result = run_python(code, json.dumps(database))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == ["refused True True", "components 0"]


# -- reads survive a file changed underneath -------------------------------------------------------

TRUNCATE = """
import os, sys
path = sys.argv[1]
size = os.path.getsize(path)
for round_ in range(200):
    with open(path, "r+b") as stream:   # in place, as cp or rsync --inplace do
        stream.truncate(size // 3)
        stream.seek(0, 2)
        stream.write(b"\\0" * (size - size // 3))
print("done")
"""


@pytest.mark.parametrize("lease", [True, False])
@pytest.mark.slow
def test_a_record_truncated_in_place_while_it_is_read(
    tmp_path: Path, lease: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A map of a file that shrinks kills the reader with SIGBUS; reads must not: with a
    read lease (the truncation waits for the copy) or without (read(2))."""
    import numpy as np

    from adatastore._storage import fsio as _fsio

    if not lease:
        monkeypatch.setattr(_fsio, "_F_SETLEASE", None)
    # 16 MB: above the size copied from a map, and four read(2) chunks of 4 MB. At 64 MB
    # and the real chunk size a case took 18 s (43 MB rewritten a round) for about as many
    # reads (2,200 against 1,700 now, in 1 s), with the same outcomes seen
    monkeypatch.setattr(_fsio, "_CHUNK", 1 << 22)
    c = SimpleComponent({"big": 1})
    with adatastore.ShelveDataStore(tmp_path / "store") as store:
        array = np.arange(2_000_000, dtype=np.float64)
        assert array.nbytes > 3 * _fsio._CHUNK
        assert array.nbytes > _fsio._MAP_FROM
        store.store(c, "v", array)
        path = record_file(store.async_store, c, "v")
        with subprocess.Popen(
            [sys.executable, "-c", TRUNCATE, str(path)], stdout=subprocess.PIPE, text=True
        ) as truncator:
            outcomes = set()
            while truncator.poll() is None:
                try:
                    value = store.retrieve(c, "v")
                    outcomes.add("whole" if np.array_equal(value, array) else "WRONG")
                except CorruptEntryError:
                    outcomes.add("corrupt")
            assert truncator.wait() == 0
    assert "WRONG" not in outcomes
    assert outcomes  # the reader lived through it


# -- clean-up removes only what the store made ------------------------------------------------


@pytest.mark.anyio
@pytest.mark.asyncio_only  # Django runs on asyncio
async def test_two_django_stores_sharing_a_data_root_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.txt").write_text("someone else's")
    first = AsyncDjangoORMDataStore({"ENGINE": "sqlite3", "NAME": str(tmp_path / "a.db")}, data)
    second = AsyncDjangoORMDataStore({"ENGINE": "sqlite3", "NAME": str(tmp_path / "b.db")}, data)
    c = SimpleComponent({"c": 1})
    async with first, second:
        await first.store(c, "v", b"first" * 1000)
        await second.store(c, "v", b"second" * 1000)
        assert await first.cleanup(older_than=0) == 0
        assert await second.cleanup(older_than=0) == 0
        assert await first.retrieve(c, "v") == b"first" * 1000
        assert await second.retrieve(c, "v") == b"second" * 1000
    assert (data / "notes.txt").read_text() == "someone else's"


# -- verify --repair on a store seeded with every kind of damage -------------------------------


def test_verify_repair_on_every_kind_of_damage(tmp_path: Path, sentinel: Path) -> None:
    root = tmp_path / "store"
    url = f"file://{root}"
    with adatastore.ShelveDataStore(root) as store:
        components = [SimpleComponent({"n": n}) for n in range(6)]
        for component in components:
            store.store(component, "v", "value")
        files = store.async_store
        record_file(files, components[0], "v").write_bytes(craft(CRAFTED["digest 1e400"]))
        fifo = record_file(files, components[1], "v")
        fifo.unlink()
        os.mkfifo(fifo)
        link = record_file(files, components[2], "v")
        link.unlink()
        link.symlink_to(sentinel / "precious.txt")
        meta = entry_dir(files, components[3]) / "component.json"
        meta.unlink()
        meta.symlink_to(sentinel / "precious.txt")
        planted = entry_dir(files, SimpleComponent({"planted": 1}))
        planted.symlink_to(sentinel, target_is_directory=True)
        record_file(files, components[4], "v").write_bytes(b"garbage")
    result = _cli("verify", "--repair", "--url", url)
    assert result.returncode == 1, result.stderr
    assert result.stdout.count("damaged:") == 6, result.stdout
    again = _cli("verify", "--url", url)
    assert again.returncode == 0, again.stdout
    with adatastore.ShelveDataStore(root) as store:
        assert store.retrieve(components[5], "v") == "value"


def test_every_error_here_is_a_datastore_error() -> None:
    for error in (CorruptEntryError("k", "a", "r"), IntegrityError("k", "a", "r")):
        assert isinstance(error, DataStoreError)


# -- planted read notes (limits): skipped, never fatal (issue 29, item 7) ------------------------

HUGE = "1" + "0" * 400  # a 400-digit int: float() of it overflows


async def _plant_read_notes(store: Any, key: str) -> None:
    """Bad read notes where this store's back-end keeps them."""
    backend = store.backend
    name = type(backend).__name__
    if name == "FilesBackend":
        logs = Path(store.root_dir, ".used")
        logs.mkdir(exist_ok=True)
        lines = f'["{key}", "v", {HUGE}]\n["{key}", "v", "noon"]\n[1e999]\n'
        (logs / "planted.log").write_text(lines + '["k", "v", Infinity]\n')
    elif name == "ObjectBackend":
        body = f'["{key}", "v", {HUGE}]\n["{key}", "v", NaN]\n'.encode()
        await anyio.to_thread.run_sync(backend.objects.put, backend.name("u", "planted.log"), body)
    elif name == "SQLiteBackend":

        def plant() -> None:
            with contextlib.closing(sqlite3.connect(backend.path)) as db, db:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS used (key TEXT NOT NULL, attribute TEXT NOT "
                    "NULL, used_at REAL NOT NULL, PRIMARY KEY (key, attribute)) WITHOUT ROWID"
                )
                db.execute("INSERT OR REPLACE INTO used VALUES (?, 'v', 'noon')", (key,))
                db.execute("INSERT OR REPLACE INTO used VALUES ('other', 'v', 9e999)")

        await anyio.to_thread.run_sync(plant)
    else:  # Django: a value the column holds that Python cannot take

        def plant_row() -> None:
            from django.db import connections

            connection = connections[backend.alias]
            value = {"sqlite": "'noon'", "postgresql": "'20000-01-01 00:00:00'"}
            with connection.cursor() as cursor:
                if connection.vendor == "mysql":  # a zero date, which only lax modes take
                    cursor.execute("SET SESSION sql_mode = ''")
                cursor.execute(
                    "UPDATE adatastore_dataitem SET used_at = "
                    + value.get(connection.vendor, "'0000-00-00 00:00:00'")
                )
                if connection.vendor == "mysql":
                    cursor.execute("SET SESSION sql_mode = DEFAULT")

        await backend._orm(plant_row)


@pytest.mark.anyio
async def test_planted_read_notes_are_skipped_and_eviction_goes_on(
    make_store: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """One bad note made every later store to a limited store fail (OverflowError,
    ValueError) after writing its value, and eviction never ran again."""
    if make_store.backend == "memory":  # type: ignore[attr-defined]
        pytest.skip("a memory store keeps its notes in this process only")
    async with make_store(max_entries=5) as store:
        components = [PlainComponent({"n": n}) for n in range(12)]
        for component in components[:4]:
            await store.store(component, "v", 1)
            assert await store.retrieve(component, "v") == 1
        await _plant_read_notes(store, store.key_of(components[0]))
        with caplog.at_level("WARNING", logger="adatastore"):
            for component in components[4:]:
                await store.store(component, "v", 2)  # trims: no error
        assert len(await store.list_contents()) <= 5
        assert store.stats.evicted >= 7
        assert "malformed read notes skipped" in caplog.text


# -- a deeply nested component record (issue 29, item 8) ----------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


def _plant_deep_component(backend: str, url: str, key: str) -> None:
    """100,000 nested ``[`` where the component's record (or its parameters) is kept."""
    record = '{"key": "' + key + '", "parameters": ' + DEEP + "}"
    location = url.split("://", 1)[1].split("?")[0]
    if backend == "files":
        Path(location, _naming.encode_name(key), "component.json").write_text(record)
    elif backend == "s3":
        bucket, prefix, endpoint = s3server.parse(url)
        name = f"{prefix}/e/{_naming.encode_name(key)}/component.json"
        s3server.S3Server(endpoint).client().put_object(Bucket=bucket, Key=name, Body=record)
    else:
        table = "components" if backend == "sqlite" else "adatastore_componentstate"
        _sqlite_rows(Path(location), f"UPDATE {table} SET parameters = ? WHERE key = ?", DEEP, key)


@pytest.mark.parametrize("backend", ["files", "sqlite", "s3", "django-sqlite"])
def test_a_deeply_nested_component_record_is_damage_not_a_crash(
    tmp_path: Path, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """RecursionError came out of ls, stats, show, verify, verify --repair and prune, and
    of every store to a limited store; now the record is damage, reported and repaired."""
    from faults import store_url

    from adatastore import cli, open_store_sync

    with store_url(backend, tmp_path) as url:
        components = [PlainComponent({"n": n}) for n in range(3)]
        with open_store_sync(url) as store:
            for component in components:
                store.store(component, "v", 1)
            key = store.key_of(components[0])
        _plant_deep_component(backend, url, key)
        limited = url + ("&" if "?" in url else "?") + "max_entries=10"
        with open_store_sync(limited) as store:
            store.store(PlainComponent({"n": 9}), "v", 9)  # a trim lists every entry
            assert store.retrieve(components[1], "v") == 1
        for command in (["ls"], ["stats"], ["show", key[:12]], ["prune", "--older-than", "99d"]):
            code = cli.main([*command, "--url", url])
            captured = capsys.readouterr()
            assert code in (0, 2), (command, captured.err)
            assert "Recursion" not in captured.err + captured.out
        assert cli.main(["verify", "--url", url]) == 1
        shown = capsys.readouterr().out
        assert "component record" in shown
        assert "damaged" in shown
        assert cli.main(["verify", "--repair", "--url", url]) == 1
        assert "1 removed" in capsys.readouterr().out
        assert cli.main(["verify", "--url", url]) == 0, capsys.readouterr().out
        with open_store_sync(url) as store:
            assert store.retrieve(components[2], "v") == 1
            store.store(components[0], "v", "again")
            assert store.retrieve(components[0], "v") == "again"


# -- a .git planted in an ancestor directory (issue 29, item 5) ----------------------------------

_MODEL = """
class Net:
    version = 1
    parameters = {"n": 1}
    input = None
"""

_STORE_ONCE = """
import sys
sys.path.insert(0, sys.argv[1])
import model
from adatastore import open_store_sync
with open_store_sync(sys.argv[2]) as store:
    store.store(model.Net(), "v", 1)
    print(store.provenance(model.Net(), "v").commit)
"""


@pytest.mark.parametrize("planted", ["HEAD", "packed-refs", ".git", "a device"])
def test_a_git_directory_planted_above_the_code_never_blocks(tmp_path: Path, planted: str) -> None:
    """Anyone who can create ``<ancestor>/.git`` chose what the fingerprint's walk opened
    with a blocking open(): a FIFO there hung every first store forever."""
    package = tmp_path / "repo" / "pkg"
    package.mkdir(parents=True)
    (package / "model.py").write_text(_MODEL)
    dot_git = tmp_path / "repo" / ".git"
    if planted == ".git":
        os.mkfifo(dot_git)
    else:
        dot_git.mkdir()
        if planted == "HEAD":
            os.mkfifo(dot_git / "HEAD")
        elif planted == "a device":
            (dot_git / "HEAD").symlink_to("/dev/zero")
        else:
            (dot_git / "HEAD").write_text("ref: refs/heads/main\n")
            os.mkfifo(dot_git / "packed-refs")
    done = run_python(_STORE_ONCE, str(package), f"sqlite:///{tmp_path}/s.db", timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"


def test_the_git_walk_stops_at_a_file_system_boundary(tmp_path: Path) -> None:
    """A repository above a mount point is not the code's (git does not cross one either)."""
    from adatastore._keys.fingerprints import git_commit

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("0123456789abcdef0123456789abcdef01234567\n")
    mounted = tmp_path / "mnt"
    mounted.mkdir()
    assert git_commit(str(mounted)) == "0123456789abcdef0123456789abcdef01234567"
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mounted)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (mounted / "code").mkdir()
        assert git_commit(str(mounted / "code")) is None
    finally:
        subprocess.run(["umount", str(mounted)], check=True)


# -- decompression bombs (issue 29, item 6) ------------------------------------------------------

_READ_BOMB = """
import json, resource, sys
from components import PlainComponent
from adatastore import ShelveDataStore
from adatastore.errors import CorruptEntryError
with ShelveDataStore(sys.argv[1]) as store:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        store.retrieve(PlainComponent({"n": 1}), "v")
        error = None
    except CorruptEntryError as caught:
        error = str(caught)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"error": error, "grown_kib": grown}))
"""


def _bomb(codec: str, decoded: int) -> bytes:
    """A compressed chunk of a few KB that decodes to `decoded` zero bytes, saying so."""
    zeros = bytes(decoded)
    if codec == "zstd":
        import zstandard

        return bytes(zstandard.ZstdCompressor(level=1, write_content_size=True).compress(zeros))
    if codec == "blosc2":
        import blosc2

        return bytes(blosc2.compress2(zeros, typesize=1, clevel=1))
    import lz4.block

    return bytes(lz4.block.compress(zeros, store_size=False))


@pytest.mark.parametrize("codec", ["zstd", "blosc2", "lz4"])
def test_a_decompression_bomb_is_refused_before_it_is_decoded(tmp_path: Path, codec: str) -> None:
    """A record of a few KB whose part declares 2 MiB in two chunks, each decoding to
    128 MiB: the reader grew by 256 MiB before refusing it. Now each chunk's declared
    size is checked against its 1-MiB slot first, and it decodes into that slot only."""
    root = tmp_path / "store"
    component = PlainComponent({"n": 1})
    with adatastore.ShelveDataStore(root) as store:
        store.store(component, "v", 1)
        key = store.key_of(component)
    chunk = _bomb(codec, (16 if codec == "lz4" else 128) << 20)  # lz4 packs zeros 255:1 at most
    part = struct.pack("<QIIII", 2 << 20, 1 << 20, 2, 0, len(chunk)) + struct.pack("<I", len(chunk))
    part += chunk + chunk
    record = _record.seal("pickle", "v", [b"x", part], key=key, compression=["", codec])
    path = root / _naming.encode_name(key) / (_naming.encode_name("v") + ".rec")
    path.write_bytes(b"".join(bytes(buffer) for buffer in record))
    assert path.stat().st_size < 1 << 20  # a small record
    done = run_python(_READ_BOMB, str(root))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["error"] is not None, found
    assert "decompress" in found["error"]
    assert found["grown_kib"] < 32 << 10, found  # under 32 MiB, not 256
