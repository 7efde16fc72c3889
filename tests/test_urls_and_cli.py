"""open_store URLs, the demo and the command line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from components import SimpleComponent

from adatastore import (
    AsyncDataStore,
    AsyncMemoryDataStore,
    AsyncShelveDataStore,
    AsyncSQLiteDataStore,
    JSONSerializer,
    SyncDataStore,
    open_store,
    open_store_sync,
    register_scheme,
    urls,
)
from adatastore.errors import ConfigurationError

pytestmark = pytest.mark.asyncio_only


async def round_trip(url: Any, **options: Any) -> AsyncDataStore:
    async with await open_store(url, **options) as store:
        c = SimpleComponent({"url": str(url)})
        await store.store(c, "v", "stored")
        assert await store.retrieve(c, "v") == "stored"
    return store


@pytest.mark.anyio
async def test_each_scheme_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cases: list[tuple[Any, type, Path | None]] = [
        ("sqlite:///relative/cache.db", AsyncSQLiteDataStore, tmp_path / "relative/cache.db"),
        (f"sqlite:///{tmp_path}/absolute.db", AsyncSQLiteDataStore, tmp_path / "absolute.db"),
        ("sqlite:plain.db", AsyncSQLiteDataStore, tmp_path / "plain.db"),
        (f"file://{tmp_path}/dir", AsyncShelveDataStore, tmp_path / "dir"),
        (f"file://localhost{tmp_path}/local", AsyncShelveDataStore, tmp_path / "local"),
        ("file:relative-dir", AsyncShelveDataStore, tmp_path / "relative-dir"),
        ("memory://", AsyncMemoryDataStore, None),
        ("just/a/path.db", AsyncSQLiteDataStore, tmp_path / "just/a/path.db"),
        (tmp_path / "pathlike.db", AsyncSQLiteDataStore, tmp_path / "pathlike.db"),
        (f"sqlite:///{tmp_path}/with%20space.db", AsyncSQLiteDataStore, tmp_path / "with space.db"),
    ]
    for url, kind, where in cases:
        store = await round_trip(url)
        assert type(store) is kind, url
        if where is not None:
            assert where.exists(), url


@pytest.mark.anyio
async def test_sqlite_four_slashes_is_absolute(tmp_path: Path) -> None:
    store = await round_trip(f"sqlite:///{tmp_path}/abs.db")
    assert isinstance(store, AsyncSQLiteDataStore)
    assert store.path == tmp_path / "abs.db"
    assert f"sqlite:///{tmp_path}".startswith("sqlite:////")


@pytest.mark.anyio
async def test_environment_variable_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADATASTORE_URL", f"file://{tmp_path}/from-env")
    store = await round_trip(None)
    assert isinstance(store, AsyncShelveDataStore)
    assert (tmp_path / "from-env" / ".adatastore").exists()
    monkeypatch.delenv("ADATASTORE_URL")
    with pytest.raises(ConfigurationError, match="ADATASTORE_URL is not set"):
        await open_store()


@pytest.mark.anyio
async def test_options_from_query_and_keywords(tmp_path: Path) -> None:
    store = await round_trip(f"sqlite:///{tmp_path}/o.db?durable=true&busy_timeout=2.5")
    assert isinstance(store, AsyncSQLiteDataStore)
    assert (store.durable, store.busy_timeout) == (True, 2.5)
    store = await round_trip(f"sqlite:///{tmp_path}/o.db?durable=yes", durable=False)
    assert isinstance(store, AsyncSQLiteDataStore)
    assert store.durable is False
    json_store = await round_trip("memory://", serializer=JSONSerializer())
    assert isinstance(json_store.serializer, JSONSerializer)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost/0", "unknown store URL scheme 'redis'.*django.*memory://.*sqlite://"),
        ("sqlite://", "names no database file"),
        ("sqlite:///", "names no database file"),
        ("sqlite://otherhost/x.db", "on this machine, not on 'otherhost'"),
        ("file://", "names no directory"),
        ("memory://somewhere", "takes no path"),
        (
            "sqlite:///x.db?colour=blue",
            "unknown option 'colour'.*busy_timeout, compression, create, durable, "
            "key_includes_code, max_age, max_entries, max_size, mmap, on_bad_entry",
        ),
        ("sqlite:///x.db?durable=maybe", "'durable' must be a bool"),
        ("sqlite:///x.db?busy_timeout=soon", "'busy_timeout' must be a non-negative finite number"),
        ("", "non-empty string"),
        ("sqlite://[::1", "malformed"),
    ],
)
def test_bad_urls_give_a_clear_error(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_store_sync(url)


def test_open_store_sync(tmp_path: Path) -> None:
    with open_store_sync(f"sqlite:///{tmp_path}/sync.db") as store:
        assert isinstance(store, SyncDataStore)
        store.store(SimpleComponent({}), "v", 1)
        assert store.retrieve(SimpleComponent({}), "v") == 1
    assert "sqlite" in urls.schemes()


def test_register_scheme() -> None:
    made: list[str] = []

    def factory(url: urls.StoreURL, options: dict[str, Any]) -> AsyncDataStore:
        made.append(url.path)
        return AsyncMemoryDataStore(**options)

    register_scheme("scratch", factory, description="a test scheme")
    try:
        with open_store_sync("scratch://anything/at/all") as store:
            store.store(SimpleComponent({}), "v", 2)
        assert made == ["/at/all"]
    finally:
        urls._SCHEMES.pop("scratch")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adatastore", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_demo_second_run_is_served_from_the_store(tmp_path: Path) -> None:
    result = run_cli("demo", "--dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    runs = re.findall(r"hits=(\d) misses=(\d)", result.stdout)
    assert runs == [("0", "3"), ("3", "0")]
    assert (tmp_path / "demo.db").exists()
    again = run_cli("demo", "--dir", str(tmp_path))
    assert re.findall(r"hits=(\d) misses=(\d)", again.stdout) == [("3", "0"), ("3", "0")]
    rates = re.findall(r"mean rate ([\d.]+) Hz", result.stdout + again.stdout)
    assert len(set(rates)) == 1


@pytest.mark.slow
def test_demo_on_another_url(tmp_path: Path) -> None:
    result = run_cli("demo", "--url", f"file://{tmp_path}/files")
    assert result.returncode == 0, result.stderr
    assert re.findall(r"hits=(\d) misses=(\d)", result.stdout) == [("0", "3"), ("3", "0")]


def test_cli_errors_are_messages_not_tracebacks() -> None:
    result = run_cli("demo", "--url", "nosuch://x")
    assert result.returncode == 2
    assert result.stderr.startswith("adatastore: error: unknown store URL scheme")
    assert "Traceback" not in result.stderr
    assert run_cli("--help").returncode == 0
    assert run_cli("demo", "--help").returncode == 0
    assert run_cli().returncode == 2


def test_urls_take_the_policy_options(tmp_path: Path) -> None:
    url = (
        f"sqlite:///{tmp_path}/p.db?max_size=50MB&max_entries=1000&max_age=30d"
        "&on_bad_entry=raise&key_includes_code=1&warn_stale_code=0"
    )
    store = open_store_sync(url)
    try:
        policy = store.async_store._parts.context.policy
        assert (policy.max_size, policy.max_entries, policy.max_age) == (
            50_000_000,
            1000,
            2_592_000.0,
        )
        assert (policy.on_bad_entry, policy.key_includes_code, policy.warn_stale_code) == (
            "raise",
            True,
            False,
        )
        store.store(SimpleComponent({"a": 1}), "v", 1)
        assert store.spec is not None
        assert store.spec.policy == policy  # workers follow it
    finally:
        store.close()


# -- secrets in query options are never echoed (issue 29, item 12) ------------------------------

SECRET = "S3kr1tValue"
SECRET_URLS = [
    f"s3://bucket/prefix?secret_access_key={SECRET}",
    f"s3://bucket/prefix?endpoint=http://127.0.0.1:9&aws_secret_access_key={SECRET}",
    f"sqlite:///x.db?password={SECRET}",
    f"django+postgresql://user@localhost/db?password={SECRET}",
    f"django+postgresql://user:{SECRET}@localhost/db?nonsense=1",
    f"sqlite:///x.db?mistyped_option={SECRET}",  # any unknown option: it may be a secret
    f"sqlite:///x.db?payloads=s3://b/p%3Fsecret_key%3D{SECRET}",
]


@pytest.mark.parametrize("url", SECRET_URLS)
def test_secret_options_are_masked_in_errors_reprs_and_the_cli(url: str, tmp_path: Path) -> None:
    """The "unknown option" error repeated the whole URL, secret included."""
    from adatastore.urls import parse_url

    with pytest.raises(ConfigurationError) as raised:
        open_store_sync(url.replace("x.db", str(tmp_path / "x.db"))).close()
    assert SECRET not in str(raised.value)
    assert SECRET not in repr(parse_url(url))
    shown = subprocess.run(
        [sys.executable, "-m", "adatastore", "ls", "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert shown.returncode == 2, shown.stderr
    assert SECRET not in shown.stdout + shown.stderr
    assert "***" in shown.stderr
