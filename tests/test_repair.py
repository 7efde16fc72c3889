"""Deleting only what is proved damaged, and only the record that was looked at (issue 29,
items 1, 2 and 9).

- `verify --repair` judges an entry damaged only when its record fails its checks or
  something is planted in its place; a store opened without (or with the wrong)
  ``data_root_dir`` or payload bucket is a `ConfigurationError` before anything goes, and
  a read the storage refuses (`StorageError`) keeps the entry, listed as unreadable.
- Eviction, ``prune`` and repair delete through `Backend.delete_listed`: an entry stored
  again after the listing they planned from is kept. The races are made to happen by a
  hook placed between the plan and the delete, never by timing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from components import PlainComponent
from helpers import StoreFactory, subprocess_env
from servers import fresh_database

from adatastore import (
    AsyncDjangoORMDataStore,
    AsyncShelveDataStore,
    AsyncSQLiteDataStore,
)
from adatastore._core import ops as _ops
from adatastore._runtime.clock import clock
from adatastore._storage import naming as _naming
from adatastore._storage.beneath import Directory
from adatastore.errors import ConfigurationError, StorageError
from adatastore.records import Entry

pytestmark = pytest.mark.anyio

BIG = b"x" * 300_000  # goes to a record file (or object) beside the database


def item(n: int) -> PlainComponent:
    return PlainComponent({"n": n})


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adatastore", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
        check=False,
    )


@pytest.fixture
def moving_clock() -> Iterator[None]:
    saved = clock.offset
    yield
    clock.offset = saved


# -- 1. a store opened without what its entries need is not damaged ----------------------------


@contextlib.contextmanager
def django_url(server: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A store URL (without ?data_root_dir) and its Django settings."""
    if server == "sqlite":
        name = str(tmp_path / "index.db")
        yield f"django+sqlite:///{name}", {"ENGINE": "sqlite3", "NAME": name}
    else:
        with fresh_database("postgresql") as database:
            url = f"django+postgresql://postgres@127.0.0.1:5432/{database['NAME']}"
            yield url, database


@pytest.mark.asyncio_only  # Django runs on asyncio
@pytest.mark.parametrize("server", ["sqlite", "postgresql"])
@pytest.mark.slow
async def test_verify_without_data_root_dir_says_so_and_repair_deletes_nothing(
    tmp_path: Path, server: str
) -> None:
    """The cluster example's store, verified by a URL without ?data_root_dir=: every
    healthy entry was reported damaged and --repair deleted all the rows."""
    data = tmp_path / "data"
    with django_url(server, tmp_path) as (url, database):
        async with AsyncDjangoORMDataStore(database, data) as store:
            for n in range(6):
                await store.store(item(n), "v", BIG)
        for arguments in (["verify"], ["verify", "--repair"]):
            result = cli(*arguments, "--url", url)
            assert result.returncode != 0
            assert "damaged" not in result.stdout, result.stdout
            assert "?data_root_dir=" in result.stderr, result.stderr
            assert "adatastore_" not in result.stderr  # no alias the user never chose
        wrong = tmp_path / "elsewhere"
        wrong.mkdir()
        result = cli("verify", "--repair", "--url", f"{url}?data_root_dir={wrong}")
        assert result.returncode != 0
        assert "wrong data_root_dir" in result.stderr, result.stderr
        right = cli("verify", "--url", f"{url}?data_root_dir={data}")
        assert right.returncode == 0, right.stdout + right.stderr
        assert "6 entries checked, 0 damaged" in right.stdout
        async with AsyncDjangoORMDataStore(database, data) as store:
            assert [await store.retrieve(item(n), "v") for n in range(6)] == [BIG] * 6


async def test_a_payload_file_deleted_by_hand_is_still_damage(tmp_path: Path) -> None:
    """The other side of the line: the payload directory is there, one file is gone."""
    async with AsyncSQLiteDataStore(tmp_path / "s.db") as store:
        await store.store(item(0), "v", BIG)
        await store.store(item(1), "v", BIG)
        (record, _) = sorted(p for p in tmp_path.rglob("*.rec") if ".tmp" not in p.parts)
        record.unlink()
        report = await store.verify(repair=True)
        assert (len(report.damaged), report.removed) == (1, 1)
        assert [await store.contains(item(n), "v") for n in range(2)].count(True) == 1


@pytest.mark.slow
async def test_payloads_in_an_unreachable_or_wrong_bucket_are_never_judged(
    tmp_path: Path, s3: Any
) -> None:
    """SQLite's large records in a bucket: an endpoint that does not answer keeps every
    entry (unreadable); a prefix with nothing of the store is a configuration error."""
    bucket = s3.new_bucket()
    right = f"s3://{bucket}/payloads?endpoint={s3.endpoint}"
    async with AsyncSQLiteDataStore(tmp_path / "s.db", payloads=right) as store:
        for n in range(3):
            await store.store(item(n), "v", BIG)
    with socket_nobody_listens_on() as port:
        down = f"s3://{bucket}/payloads?endpoint=http://127.0.0.1:{port}&timeout=1"
        async with AsyncSQLiteDataStore(tmp_path / "s.db", payloads=down) as store:
            report = await store.verify(repair=True)
    assert (report.damaged, report.removed, len(report.unreadable)) == ((), 0, 3)
    assert not report.ok
    wrong = f"s3://{bucket}/other?endpoint={s3.endpoint}"
    async with AsyncSQLiteDataStore(tmp_path / "s.db", payloads=wrong) as store:
        with pytest.raises(ConfigurationError, match="wrong data_root_dir or payloads"):
            await store.verify(repair=True)
        with pytest.raises(ConfigurationError):
            await store.retrieve(item(0), "v")
    async with AsyncSQLiteDataStore(tmp_path / "s.db", payloads=right) as store:
        assert [await store.retrieve(item(n), "v") for n in range(3)] == [BIG] * 3


@contextlib.contextmanager
def socket_nobody_listens_on() -> Iterator[int]:
    """A local port that refuses connections (bound, never listening)."""
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


async def test_an_io_error_keeps_the_entries_of_a_files_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A files store whose reads fail with EIO (a mount going down): nothing is judged."""
    async with AsyncShelveDataStore(tmp_path / "store") as store:
        for n in range(3):
            await store.store(item(n), "v", n)

        real_read = Directory.read

        def failing(directory: Directory, relative: str, mapped: Any = None) -> Any:
            if relative.endswith(".rec"):  # the records' disk fails, the listing is cached
                raise OSError(errno.EIO, "Input/output error")
            return real_read(directory, relative, mapped)

        monkeypatch.setattr(Directory, "read", failing)
        report = await store.verify(repair=True)
        assert (report.damaged, report.removed, len(report.unreadable)) == ((), 0, 3)
        assert "Input/output error" in report.unreadable[0].reason
        monkeypatch.undo()
        assert [await store.retrieve(item(n), "v") for n in range(3)] == [0, 1, 2]


# -- 2. eviction and repair delete only the record they planned to ------------------------------


async def test_eviction_keeps_a_value_stored_after_its_plan(
    make_store: StoreFactory, moving_clock: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the trim's listing and its delete, a victim is stored again (an expired
    entry that get_or_compute recomputed, say): the fresh value stays."""
    real_evict = _ops.evict
    restored: list[Entry] = []

    async with make_store(max_entries=10) as store:

        async def store_again_then_evict(backend: Any, victims: Any) -> list[Entry]:
            if not restored:  # the first batch only: the hook's own store trims too
                victim = victims[0]
                restored.append(victim)
                clock.offset += 50.0
                component = next(c for c in components if store.key_of(c) == victim.key)
                await store.store(component, "v", "fresh")
            return await real_evict(backend, victims)

        components = [item(n) for n in range(11)]
        for n, component in enumerate(components[:10]):
            clock.offset = n * 100.0
            await store.store(component, "v", n)
        monkeypatch.setattr(_ops, "evict", store_again_then_evict)
        clock.offset = 3_000.0
        await store.store(components[10], "v", 10)  # over the limit: a trim
        assert restored, "no eviction ran"
        (victim,) = restored
        again = next(c for c in components if store.key_of(c) == victim.key)
        assert await store.retrieve(again, "v") == "fresh"
        assert len(await store.list_contents()) <= 10


async def test_delete_listed_deletes_only_unchanged_records(make_store: StoreFactory) -> None:
    """The compare-and-delete every back-end implements: of three entries listed, the one
    stored again since is kept, the one deleted since is not counted, the third goes."""
    async with make_store() as store:
        for n in range(3):
            await store.store(item(n), "v", n)
        listed = {entry.key: entry for entry in await store.list_contents()}
        await store.store(item(0), "v", "again")
        await store.delete(item(1), "v")
        gone = await store.backend.delete_listed([listed[store.key_of(item(n))] for n in range(3)])
        assert [entry.key for entry in gone] == [store.key_of(item(2))]
        assert await store.retrieve(item(0), "v") == "again"
        assert not await store.contains(item(2), "v")


def test_a_record_stored_between_the_check_and_the_rename_is_put_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files: the narrowest window, where the rename that takes the planned record away
    takes the new one instead; it is linked back and the entry kept."""
    from adatastore import ShelveDataStore

    with ShelveDataStore(tmp_path / "store") as store:
        store.store(item(0), "v", "old")
        (listed,) = store.list_contents()
        real_rename = os.rename

        def racing_rename(source: Any, target: Any, **options: Any) -> None:
            if str(source).endswith(".rec"):
                monkeypatch.setattr(os, "rename", real_rename)
                store.store(item(0), "v", "new")  # lands just before the rename
            real_rename(source, target, **options)

        monkeypatch.setattr(os, "rename", racing_rename)
        assert store.async_store.backend.blocking_delete_listed([listed]) == []
        assert store.retrieve(item(0), "v") == "new"
        leftovers = [p.name for p in (tmp_path / "store").rglob("*") if p.name.startswith(".tmp")]
        assert leftovers == []


async def test_repair_keeps_a_damaged_entry_stored_again_meanwhile(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_store() as store:
        await store.store(item(0), "v", 0)
        await store.store(item(1), "v", 1)
        (component,) = [
            c for c in await store.backend.components(None) if c.key == store.key_of(item(0))
        ]
        await store.backend.write(component.key, "v", [b"garbage" * 10], component)
        real_planted = store.backend.planted

        async def recomputed_meanwhile() -> Any:  # after the reads, before the deletes
            await store.store(item(0), "v", "recomputed")
            return await real_planted()

        monkeypatch.setattr(store.backend, "planted", recomputed_meanwhile)
        report = await store.verify(repair=True)
        assert [d.key for d in report.damaged] == [store.key_of(item(0))]
        assert report.removed == 0
        assert await store.retrieve(item(0), "v") == "recomputed"


# -- 9. a directory planted where a record belongs ----------------------------------------------


async def test_repair_removes_an_empty_directory_planted_as_a_record(tmp_path: Path) -> None:
    """Every store of that entry failed ("Is a directory") and repair left it; now an
    empty one goes, and one with something in it is reported with its path and left."""
    async with AsyncShelveDataStore(tmp_path / "store") as store:
        for n in range(3):
            await store.store(item(n), "v", n)
        empty, full = (record_file(store, item(n)) for n in range(2))
        for path in (empty, full):
            path.unlink()
            path.mkdir()
        (full / "something").write_text("not ours")
        with pytest.raises(StorageError, match="directory"):
            await store.store(item(0), "v", "x")
        report = await store.verify(repair=True)
        assert len(report.damaged) == 2
        assert report.removed == 1
        assert not empty.exists()
        assert (full / "something").read_text() == "not ours"
        again = await store.verify()
        assert [d.key for d in again.damaged] == [store.key_of(item(1))]
        assert "not empty" in again.damaged[0].reason or "empty" in again.damaged[0].reason
        await store.store(item(0), "v", "works again")
        assert await store.retrieve(item(0), "v") == "works again"
        assert await store.retrieve(item(2), "v") == 2


def record_file(store: AsyncShelveDataStore, component: object) -> Path:
    entry = _naming.encode_name(store.key_of(component))
    return Path(store.root_dir, entry, _naming.encode_name("v") + ".rec")
