"""Batches are all or nothing, on every back-end: refused, failed or killed midway, a
`store_many` leaves no entries and no files behind. And a user who may read a store but
not write it gets a clear error at once where a write is needed."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import s3server
from helpers import run_python, subprocess_env
from servers import fresh_database

BATCH = """
import sys
import adatastore
from adatastore.errors import StorageError
from components import SimpleComponent

url, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = adatastore.open_store_sync(url)
items = [(SimpleComponent({"tag": tag, "n": n}), "v",
          (b"L" * 200_000) if n % 100 == 7 else n) for n in range(count)]
print("started", flush=True)
try:
    store.store_many(items)
    print("stored", flush=True)
except StorageError as error:
    print("refused", error, flush=True)
store.close()
"""

COUNT = """
import sys
import adatastore
from components import SimpleComponent
store = adatastore.open_store_sync(sys.argv[1])
listed = {(e.key, e.attribute_name) for e in store.list_contents()}
for tag in sys.argv[2:]:
    components = [SimpleComponent({"tag": tag, "n": n}) for n in range(1500)]
    values = store.retrieve_many([(c, "v") for c in components])
    wrong = [n for n, v in enumerate(values)
             if v is not None and v != ((b"L" * 200_000) if n % 100 == 7 else n)]
    present = [(store.key_of(c), "v") in listed for c in components]
    if wrong or [v is not None for v in values] != present:
        print(tag, "torn")   # a value is wrong, or the listing and the reads disagree
    else:
        print(tag, sum(present))
store.close()
"""


@contextlib.contextmanager
def url_for(backend: str, directory: Path) -> Iterator[str]:
    data = directory / "data"
    if backend == "files":
        yield f"file://{directory}/files"
    elif backend == "sqlite":
        yield f"sqlite:///{directory}/store.db"
    elif backend == "django-sqlite":
        yield f"django+sqlite:///{directory}/django.db?data_root_dir={data}"
    elif backend == "s3":
        yield s3server.url()
    else:
        server = backend.split("-")[1]
        with fresh_database(server) as database:
            scheme = "postgresql" if server == "postgresql" else "mysql"
            yield (
                f"django+{scheme}://{database['USER']}@{database['HOST']}:{database['PORT']}/"
                f"{database['NAME']}?data_root_dir={data}"
            )


def leftovers(directory: Path) -> list[str]:
    """Temporary or staging files anywhere under `directory`."""
    return sorted(
        str(path.relative_to(directory))
        for path in directory.rglob("*")
        if path.is_file() and any(part in (".tmp", ".batches") for part in path.parts)
    )


def run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_python(code, *args, timeout=300)


BACKENDS = ["files", "sqlite", "django-sqlite", "django-postgresql", "django-mariadb"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.slow
def test_a_killed_batch_is_all_or_nothing(backend: str, tmp_path: Path) -> None:
    """SIGKILL at a random moment of a 1,500-item store_many, 8 times: each batch is then
    stored whole or not at all, and the next open removes what the dead writer left."""
    rng = random.Random(1)
    with url_for(backend, tmp_path) as url:
        assert run(BATCH, url, "warm-up", "10").returncode == 0
        tags = []
        for round_number in range(8):
            tag = f"round{round_number}"
            tags.append(tag)
            with subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(BATCH), url, tag, "1500"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=subprocess_env(),
            ) as child:
                assert child.stdout is not None
                assert child.stdout.readline().strip() == "started"
                # fault injection timing, not synchronisation: kill somewhere in the batch
                time.sleep(rng.uniform(0.0, 0.6))
                child.send_signal(signal.SIGKILL)
                child.wait(timeout=30)
        result = run(COUNT, url, *tags)
        assert result.returncode == 0, result.stderr[-3000:]
        counts = dict(line.split() for line in result.stdout.splitlines())
        assert set(counts) == set(tags)
        assert all(counts[tag] in ("0", "1500") for tag in tags), counts
        assert leftovers(tmp_path) == []


@pytest.mark.parametrize("backend", ["files", "sqlite", "django-sqlite", "django-postgresql"])
def test_a_batch_refused_for_a_full_disk_leaves_nothing(backend: str, tmp_path: Path) -> None:
    """The records of a batch fill a 1 MiB file system midway: StorageError, no entries,
    and no file of the batch left (the space is free again: the next store fits)."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to mount a private file system")
    disk = tmp_path / "disk"
    disk.mkdir()
    code = textwrap.dedent(
        """
        import os, sys
        import adatastore
        from adatastore.errors import StorageError
        from components import SimpleComponent
        url, disk = sys.argv[1], sys.argv[2]
        store = adatastore.open_store_sync(url)
        store.store(SimpleComponent({"first": 1}), "v", 1)
        used = sum(f.stat().st_size for f in __import__("pathlib").Path(disk).rglob("*")
                   if f.is_file())
        items = [(SimpleComponent({"n": n}), "v", bytes([n]) * 300_000) for n in range(6)]
        try:
            store.store_many(items)
            print("stored")
        except StorageError as error:
            print("refused", "full" in str(error) or "space" in str(error))
        print("entries", len(store.list_contents()))
        store.store(SimpleComponent({"after": 1}), "v", b"a" * 300_000)
        print("after", store.retrieve(SimpleComponent({"after": 1}), "v") == b"a" * 300_000)
        store.close()
        """
    )
    with url_for(backend, disk) as url:
        script = (
            f'mount -t tmpfs -o size=1m tmpfs {disk} && exec {sys.executable} -c "$0" "$1" "$2"'
        )
        result = subprocess.run(
            ["unshare", "--mount", "sh", "-c", script, code, url, str(disk)],
            capture_output=True,
            text=True,
            timeout=120,
            env=subprocess_env(),
            check=False,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == ["refused True", "entries 1", "after True"]


@pytest.mark.parametrize("backend", ["django-postgresql", "django-mariadb"])
def test_a_batch_failing_in_the_database_stores_nothing(backend: str, tmp_path: Path) -> None:
    """A later item the database refuses (PostgreSQL: a NUL in the version; MariaDB: a
    value over max_allowed_packet) rolls the whole batch back."""
    code = """
    import sys
    import adatastore
    from adatastore.errors import DataStoreError
    from components import SimpleComponent
    store = adatastore.open_store_sync(sys.argv[1])
    good = [(SimpleComponent({"n": n}), "v", n) for n in range(5)]
    if sys.argv[2] == "django-postgresql":
        bad = (SimpleComponent({"n": 99}, version="1\\x002"), "v", 1)
    else:
        bad = (SimpleComponent({"n": 99}), "v", b"x" * 20_000_000)
    try:
        store.store_many([*good, bad])
        print("stored")
    except DataStoreError as error:
        print("refused", type(error).__name__)
    print("entries", len(store.list_contents()))
    store.close()
    """
    server = backend.split("-")[1]
    with fresh_database(server) as database:
        scheme = "postgresql" if server == "postgresql" else "mysql"
        url = (
            f"django+{scheme}://{database['USER']}@{database['HOST']}:{database['PORT']}/"
            f"{database['NAME']}"
        )
        result = run(code, url, backend)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == ["refused StorageError", "entries 0"]


READER = """
import os, sys, time
import adatastore
import anyio._backends._asyncio, concurrent.futures.thread, sqlite3
import encodings.latin_1, encodings.unicode_escape
from adatastore.errors import StorageError
from components import SimpleComponent
os.setgid(65534)
os.setuid(65534)  # nobody: may read the store, not write it (nor root's Python install)
store = adatastore.open_store_sync(sys.argv[1])
print("hit", store.retrieve(SimpleComponent({"n": 1}), "v"))
print("hit computed", store.get_or_compute(SimpleComponent({"n": 1}), "v", lambda: 0))
for name, call in [
    ("get_or_compute", lambda: store.get_or_compute(SimpleComponent({"n": 2}), "v", lambda: 2)),
    ("warm", lambda: store.warm([SimpleComponent({"n": 3})], "v", lambda c: 3)),
]:
    started = time.monotonic()
    try:
        call()
        print(name, "no error")
    except StorageError as error:
        print(name, "read-only" in str(error), time.monotonic() - started < 5)
"""


@pytest.fixture
def shared_directory() -> Iterator[Path]:
    """A directory other users can reach (pytest's own temporary ones are private)."""
    directory = Path(tempfile.mkdtemp(prefix="adatastore-shared-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("backend", ["files", "sqlite"])
def test_a_reader_without_write_permission(backend: str, shared_directory: Path) -> None:
    """Reads work; get_or_compute and warm of a missing entry say at once that the store
    is read-only for this user (they used to wait for the whole lock timeout)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a child as another user")
    tmp_path = shared_directory
    tmp_path.chmod(0o755)
    with url_for(backend, tmp_path) as url:
        setup = run(
            "import sys, adatastore; from components import SimpleComponent\n"
            "s = adatastore.open_store_sync(sys.argv[1])\n"
            "s.store(SimpleComponent({'n': 1}), 'v', 1)\n"
            "s.get_or_compute(SimpleComponent({'n': 0}), 'v', lambda: 0)\n"
            "s.close()\n",
            url,
        )
        assert setup.returncode == 0, setup.stderr
        # SQLite in WAL mode: a user who cannot write the directory reads only while the
        # -wal and -shm files exist, i.e. while a writer has the store open (documented)
        keeper = sqlite3.connect(tmp_path / "store.db") if backend == "sqlite" else None
        if keeper is not None:
            keeper.execute("SELECT count(*) FROM entries").fetchall()
        for path in [tmp_path, *tmp_path.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)  # a group-readable lab cache
        for parent in tmp_path.parents:
            if parent.stat().st_mode & 0o005 != 0o005:
                pytest.skip(f"{parent} is not readable by other users")
        result = run(READER, url)
        if keeper is not None:
            keeper.close()
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [
        "hit 1",
        "hit computed 1",
        "get_or_compute True True",
        "warm True True",
    ]


@pytest.mark.slow
def test_a_files_batch_killed_while_writing_its_plan_leaves_nothing(tmp_path: Path) -> None:
    """SIGKILL right after the plan's bytes are written, before it is renamed into place
    (the commit point): nothing of the batch is stored and the next open removes every
    file the writer made. (CI once killed a writer there by chance and found its plan's
    temporary file left in ``.batches``.)"""
    code = BATCH.replace(
        'print("started", flush=True)',
        textwrap.dedent(
            """
            import os, signal
            from adatastore._storage import fsio as _fsio
            original = _fsio.write_new
            def write_new(name, parts, **options):
                original(name, parts, **options)
                if parts and bytes(parts[0]).startswith(b'[["'):  # the batch's plan
                    os.kill(os.getpid(), signal.SIGKILL)
            _fsio.write_new = write_new
            print("started", flush=True)
            """
        ),
    )
    url = f"file://{tmp_path}/files"
    assert run(BATCH, url, "warm-up", "10").returncode == 0
    killed = run(code, url, "killed", "50")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    result = run(COUNT, url, "killed")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["killed", "0"]
    assert leftovers(tmp_path) == []
