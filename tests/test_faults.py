"""The fault suite: many processes, killed writers, damage, full and read-only disks,
cancellation. Real processes, files and servers; each test has a hard pass criterion.
"""

from __future__ import annotations

import os
import random
import select
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from components import SimpleComponent
from faults import SHARED_BACKENDS, damage, expected, is_whole, store_url
from helpers import StoreFactory, subprocess_env

from adatastore import (
    AsyncDataStore,
    AsyncShelveDataStore,
    AsyncSQLiteDataStore,
    open_store_sync,
)
from adatastore.errors import CorruptEntryError, DataStoreError


def python(code: str, *args: str, **options: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=subprocess_env(),
        text=True,
        **options,
    )


# -- N processes x M writes, overlapping keys ---------------------------------------------------

WORKER = """
import random, sys
from adatastore import open_store_sync
from components import SimpleComponent
from faults import expected, is_whole

url, role, me = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = open_store_sync(url)
if role == "write":
    rng = random.Random(me)
    for i in range(60):
        entry = rng.randrange(8)
        store.store(SimpleComponent({"entry": entry}), "value", expected(me, i, big=i % 5 == 0))
else:
    # read while the writers write: at least 40 rounds, and until every entry was seen
    import time
    seen = torn = rounds = 0
    present = set()
    deadline = time.monotonic() + 120
    while (rounds < 40 or len(present) < 8) and time.monotonic() < deadline:
        rounds += 1
        for entry in range(8):
            value = store.retrieve(SimpleComponent({"entry": entry}), "value")
            if value is not None:
                present.add(entry)
                seen += 1
                torn += not is_whole(value)
    print(seen, torn)
store.close()
"""


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
@pytest.mark.slow
def test_processes_with_overlapping_keys_never_tear(backend: str, tmp_path: Path) -> None:
    with store_url(backend, tmp_path) as url:
        open_store_sync(url).close()  # create the storage once, as a deployment would
        writers = [python(WORKER, url, "write", str(n), stderr=subprocess.PIPE) for n in range(3)]
        reader = python(WORKER, url, "read", "0", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        read_out, read_err = reader.communicate(timeout=600)
        errors = [w.communicate(timeout=600)[1] for w in writers]
        assert [w.returncode for w in writers] == [0, 0, 0], errors
        assert errors == ["", "", ""]
        assert reader.returncode == 0, read_err
        seen, torn = map(int, read_out.split())
        assert seen > 0  # the reader saw values while they were being written
        assert torn == 0
        with open_store_sync(url) as store:
            values = [store.retrieve(SimpleComponent({"entry": k}), "value") for k in range(8)]
            assert all(v is not None and is_whole(v) for v in values)
            assert store.verify().ok


# -- a writer killed with SIGKILL, 100 times ----------------------------------------------------

ZYGOTE = """
import os, signal, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
url = sys.argv[1]
import adatastore
from components import SimpleComponent
from faults import expected
if url.startswith("django"):
    import adatastore.backends.django.store  # import Django once, before forking
for line in sys.stdin:
    round_ = int(line)
    pid = os.fork()
    if pid == 0:
        try:
            store = adatastore.open_store_sync(url)
            os.write(1, b"ready\\n")  # one write(2): lines from two processes never mix
            step = 0
            while True:
                entry = SimpleComponent({"entry": step % 3})
                store.store(entry, "value", expected(round_, step, big=step % 2 == 0))
                step += 1
        finally:
            os._exit(1)
    os.write(1, f"{pid}\\n".encode())
"""

KILLABLE = ["files", "sqlite", "django-sqlite", "django-postgresql"]


def _wait_for_death(pid: int) -> None:
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        readable, _, _ = select.select([handle], [], [], 30)
        assert readable, f"process {pid} survived SIGKILL"
    finally:
        os.close(handle)


class _Lines:
    """Lines from a pipe, read with os.read (no hidden buffer), each within a minute."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def next(self) -> str:
        while b"\n" not in self.buffer:
            readable, _, _ = select.select([self.fd], [], [], 60)
            assert readable, "the writer process said nothing for a minute"
            chunk = os.read(self.fd, 4096)
            assert chunk, "the writer process closed its output"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode().strip()


def _litter(backend: str, directory: Path) -> list[Path]:
    if backend == "files":
        return list((directory / "files").rglob(".tmp-*"))
    if backend == "sqlite":
        return [p for p in (directory / "store.db-payloads").rglob("*") if p.is_file()]
    return []


@pytest.mark.parametrize("backend", KILLABLE)
@pytest.mark.slow
def test_writer_killed_100_times_leaves_old_or_new(backend: str, tmp_path: Path) -> None:
    rng = random.Random(7)
    with store_url(backend, tmp_path) as url, open_store_sync(url) as store:
        for entry in range(3):  # an old value for each, whatever the timing of the kills
            store.store(SimpleComponent({"entry": entry}), "value", expected(100, entry))
        zygote = python(ZYGOTE, url, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert zygote.stdin is not None
        assert zygote.stdout is not None
        output = _Lines(zygote.stdout.fileno())
        try:
            for round_ in range(100):
                zygote.stdin.write(f"{round_}\n")
                zygote.stdin.flush()
                lines = {output.next(), output.next()}
                assert "ready" in lines, lines
                (pid,) = (int(line) for line in lines if line != "ready")
                # fault injection: land the kill at a random point of the write loop
                select.select([], [], [], rng.uniform(0, 0.03))
                os.kill(pid, signal.SIGKILL)
                _wait_for_death(pid)
                for entry in range(3):
                    value = store.retrieve(SimpleComponent({"entry": entry}), "value")
                    assert is_whole(value), (round_, entry)
        finally:
            zygote.stdin.close()
            zygote.wait(timeout=30)
            zygote.stdout.close()
        litter = _litter(backend, tmp_path)
        assert len(litter) <= 100 + 3  # at most one leftover per kill
        removed = store.cleanup(older_than=0)
        assert removed >= len([p for p in litter if p.name.startswith(".tmp-")])
        remaining = _litter(backend, tmp_path)
        if backend == "sqlite":  # only the payload files rows point to remain
            referenced = {e.key for e in store.list_contents()}
            assert len(remaining) <= len(referenced)
        else:
            assert remaining == []
        assert store.verify().ok
        for entry in range(3):
            value = store.retrieve(SimpleComponent({"entry": entry}), "value")
            assert value is not None
            assert is_whole(value)


# -- damaged entries, and verify ----------------------------------------------------------------


def _location(backend: str, url: str, directory: Path) -> str:
    if backend == "files":
        return str(directory / "files")
    if backend == "sqlite":
        return str(directory / "store.db")
    if backend == "django-sqlite":
        return str(directory / "django.db")
    if backend == "s3":
        return url
    return f"host=127.0.0.1 user=postgres dbname={url.rsplit('/', 1)[1]}"


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
def test_verify_finds_every_damaged_entry(backend: str, tmp_path: Path) -> None:
    with store_url(backend, tmp_path) as url, open_store_sync(url) as store:
        components = [SimpleComponent({"n": n}) for n in range(6)]
        for n, c in enumerate(components):
            store.store(c, "value", expected(n, 0, big=False))
        location = _location(backend, url, tmp_path)
        for n, how in enumerate(["flip", "truncate", "garbage"]):
            damage(backend, location, store.key_of(components[n]), "value", how)
        report = store.verify()
        assert report.checked == 6
        assert {d.key for d in report.damaged} == {store.key_of(c) for c in components[:3]}
        for c in components[:3]:
            with pytest.raises(CorruptEntryError):
                store.retrieve(c, "value")
        for n, c in enumerate(components[3:], start=3):
            assert store.retrieve(c, "value") == expected(n, 0, big=False)
        repaired = store.verify(repair=True)
        assert repaired.removed == 3
        assert store.verify().ok
        assert len(store.list_contents()) == 3


# -- a full disk and a read-only one ------------------------------------------------------------

LIMITS = """
import sys
from adatastore import open_store_sync
from adatastore.errors import DataStoreError, StorageError
from components import SimpleComponent
url, case = sys.argv[1], sys.argv[2]
c = SimpleComponent({"x": 1})
try:
    store = open_store_sync(url)
except DataStoreError as error:
    print("open refused:", type(error).__name__, error)
    raise SystemExit(0)
before = store.list_contents()
print("small:", store.retrieve(c, "small"))
try:
    store.store(c, "big", b"x" * 3_000_000)
    print("stored")
except StorageError as error:
    print("refused:", type(error).__name__, error)
print("after:", store.list_contents() == before, store.retrieve(c, "big"))
"""


def _in_mount_namespace(setup: str, url: str, case: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to mount a private file system")
    script = f'{setup} && exec {sys.executable} -c "$0" "$1" "$2"'
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, textwrap.dedent(LIMITS), url, case],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
        check=False,
    )


@pytest.mark.parametrize("backend", ["files", "sqlite", "django-sqlite"])
def test_disk_full_gives_storage_error_and_no_partial_entry(backend: str, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    with store_url(backend, disk) as url:
        result = _in_mount_namespace(
            f"mount -t tmpfs -o size=1m tmpfs {disk}"
            f' && {sys.executable} -c \'import adatastore; adatastore.open_store_sync("{url}")'
            f'.store(__import__("components").SimpleComponent({{"x": 1}}), "small", 1)\'',
            url,
            "full",
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "small: 1"
    assert lines[1].startswith("refused: StorageError")
    assert "full" in lines[1] or "space" in lines[1]
    assert lines[2] == "after: True None"


@pytest.mark.parametrize("backend", ["files", "sqlite"])
def test_read_only_storage_gives_a_clear_error(backend: str, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    with store_url(backend, disk) as url:
        with open_store_sync(url) as store:
            store.store(SimpleComponent({"x": 1}), "small", 1)
        before = sorted(p.name for p in disk.rglob("*"))
        result = _in_mount_namespace(
            f"mount --bind {disk} {disk} && mount -o remount,ro,bind {disk}", url, "ro"
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    if backend == "sqlite":  # SQLite in WAL mode cannot even open a read-only database
        assert lines[0].startswith("open refused: ConfigurationError")
        assert "directory is not writable (read-only file system" in lines[0]
    else:
        assert lines == [
            "small: 1",
            lines[1],
            "after: True None",
        ]
        assert lines[1].startswith("refused: StorageError")
        assert "read-only" in lines[1]
    assert sorted(p.name for p in disk.rglob("*")) == before


# -- cancellation at every await point ----------------------------------------------------------


def _twin(store: AsyncDataStore) -> AsyncDataStore | None:
    """Another store object on the same storage (None for in-process memory)."""
    if isinstance(store, AsyncShelveDataStore):
        return AsyncShelveDataStore(store.root_dir)
    if isinstance(store, AsyncSQLiteDataStore):
        return AsyncSQLiteDataStore(store.path, busy_timeout=2)
    database = getattr(store, "_database", None)
    if database is not None:
        return type(store)(database)
    return None


async def _store_cancelled_after(
    store: AsyncDataStore, c: object, value: bytes, steps: int, delay: float
) -> bool:
    """Start a store, cancel it after `steps` checkpoints and `delay` seconds."""
    finished = False

    async def run() -> None:
        nonlocal finished
        await store.store(c, "v", value)
        finished = True

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        for _ in range(steps):
            await anyio.lowlevel.checkpoint()
        if delay:
            await anyio.sleep(delay)  # fault injection timing, not synchronisation
        group.cancel_scope.cancel()
    return finished


@pytest.mark.anyio
@pytest.mark.parametrize("size", [100, 300_000], ids=["small", "large"])
async def test_cancelling_store_at_every_await_point(make_store: StoreFactory, size: int) -> None:
    old, new = b"o" * size, b"n" * size
    async with make_store() as store:
        c = SimpleComponent({"cancel": True})
        schedule = [(steps, 0.0) for steps in range(30)] + [
            (0, delay) for delay in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
        ]
        for steps, delay in schedule:
            await store.store(c, "v", old)
            finished = await _store_cancelled_after(store, c, new, steps, delay)
            # A cancelled store may still have completed (work handed to a thread runs to
            # its end); it never leaves anything but the old or the new value.
            value = await store.retrieve(c, "v")
            assert value == new if finished else value in (old, new)
            twin = _twin(store)
            if twin is not None:  # no stuck lock or transaction: another writer goes ahead
                async with twin:
                    with anyio.fail_after(10):
                        await twin.store(SimpleComponent({"twin": True}), "v", b"t")
        assert await store.cleanup(older_than=0) == 0  # nothing was left behind
        assert (await store.verify()).ok


# -- errors are DataStoreErrors --------------------------------------------------------------


def test_every_error_above_is_a_datastore_error() -> None:
    from adatastore import errors

    for name in errors.__all__:
        kind = getattr(errors, name)
        assert issubclass(kind, DataStoreError) or issubclass(kind, Warning), name
