"""The files back-end: layout, name safety, corruption, several processes, disk limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from components import SimpleComponent
from helpers import run_python, subprocess_env

from adatastore import AsyncShelveDataStore, JSONSerializer, keygenerators
from adatastore._storage import fsio as _fsio
from adatastore.errors import (
    ConfigurationError,
    CorruptEntryError,
    SerializationError,
    StorageError,
)

pytestmark = pytest.mark.anyio


def records(root: Path) -> list[Path]:
    return sorted(root.rglob("*.rec"))


def tree(path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


async def test_root_dir_is_created_with_parents(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "cache"
    async with AsyncShelveDataStore(root) as store:
        await store.store(SimpleComponent({"x": 1}), "v", 1)
    assert (root / ".adatastore").is_file()
    assert len(records(root)) == 1


async def test_root_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("hello")
    with pytest.raises(ConfigurationError, match="not a directory"):
        await AsyncShelveDataStore(not_a_dir).open()
    with pytest.raises(ConfigurationError, match="not a directory"):
        await AsyncShelveDataStore(not_a_dir / "below").open()
    assert not_a_dir.read_text() == "hello"


async def test_existing_directory_with_other_files_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "subdir").mkdir()
    async with AsyncShelveDataStore(tmp_path) as store:
        await store.store(SimpleComponent({"x": 1}), "v", 1)
        assert len(await store.list_contents()) == 1
        assert await store.delete(SimpleComponent({"x": 1})) == 1
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "subdir").is_dir()


async def test_foreign_or_newer_marker_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".adatastore").write_text(json.dumps({"format": "adatastore-files", "version": 99}))
    with pytest.raises(ConfigurationError, match="version 99"):
        await AsyncShelveDataStore(tmp_path).open()
    (tmp_path / ".adatastore").write_text("garbage")
    with pytest.raises(ConfigurationError, match="marker"):
        await AsyncShelveDataStore(tmp_path).open()


@pytest.mark.parametrize("name", ["Spikes", "x" * 255, ".hidden", "~home", "CON", "a b:c*d?"])
async def test_attribute_names_cannot_escape_root(tmp_path: Path, name: str) -> None:
    """Path-like names are refused (conformance suite); the rest are encoded, and stay in."""
    root = tmp_path / "root"
    outside_before = {p for p in tmp_path.rglob("*") if root not in p.parents and p != root}
    async with AsyncShelveDataStore(root) as store:
        c = SimpleComponent({"x": 1})
        await store.store(c, name, "value")
        await store.store(c, "plain", "other")
        assert await store.retrieve(c, name) == "value"
        assert await store.retrieve(c, "plain") == "other"
        assert {e.attribute_name for e in await store.list_contents()} == {name, "plain"}
        assert await store.delete(c, name) == 1
    outside_after = {p for p in tmp_path.rglob("*") if root not in p.parents and p != root}
    assert outside_after == outside_before
    for path in root.rglob("*"):
        assert path.resolve().is_relative_to(root.resolve())


async def test_long_readable_keys_are_shortened_safely(tmp_path: Path) -> None:
    params = {f"parameter_number_{i}": i * 1.5 for i in range(200)}
    c = SimpleComponent(params, input=SimpleComponent({"upstream": "x" * 300}))
    async with AsyncShelveDataStore(tmp_path, keygenerators.join_with_underscores) as store:
        key = store.key_of(c)
        assert len(key) > 4000
        await store.store(c, "v", 42)
        assert await store.retrieve(c, "v") == 42
        (entry,) = await store.list_contents()
        assert entry.key == key


async def _one_entry(tmp_path: Path) -> tuple[AsyncShelveDataStore, SimpleComponent, Path]:
    store = AsyncShelveDataStore(tmp_path)
    c = SimpleComponent({"x": 1})
    await store.store(c, "v", list(range(1000)))
    await store.store(SimpleComponent({"x": 2}), "v", "intact")
    (path,) = [p for p in records(tmp_path) if p.parent.name == store.key_of(c)]
    return store, c, path


def _flip(data: bytes, index: int) -> bytes:
    damaged = bytearray(data)
    damaged[index] ^= 0xFF
    return bytes(damaged)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: b"",  # emptied
        lambda data: _flip(data, len(data) - 100),  # a payload bit flipped
        lambda data: _flip(data, 20),  # a header bit flipped
        lambda data: os.urandom(len(data)),  # garbage
        lambda data: data + b"tail",  # extended
    ],
    ids=["truncated", "empty", "payload-flip", "header-flip", "garbage", "extended"],
)
async def test_damaged_entries_raise_corrupt_entry_error(tmp_path: Path, damage: object) -> None:
    store, c, path = await _one_entry(tmp_path)
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(CorruptEntryError) as caught:
        await store.retrieve(c, "v")
    assert caught.value.key == store.key_of(c)
    assert caught.value.attribute_name == "v"
    # the rest of the store still works, and storing again repairs the entry
    assert await store.retrieve(SimpleComponent({"x": 2}), "v") == "intact"
    assert len(await store.list_contents()) == 2
    await store.store(c, "v", "repaired")
    assert await store.retrieve(c, "v") == "repaired"


async def test_a_record_copied_to_another_name_is_corrupt(tmp_path: Path) -> None:
    store, c, path = await _one_entry(tmp_path)
    (path.parent / "w.rec").write_bytes(path.read_bytes())
    with pytest.raises(CorruptEntryError, match="belongs to 'v'"):
        await store.retrieve(c, "w")


async def test_no_temp_files_are_left_behind(tmp_path: Path) -> None:
    async with AsyncShelveDataStore(tmp_path, durable=True) as store:
        async with anyio.create_task_group() as group:
            for i in range(50):
                group.start_soon(store.store, SimpleComponent({"i": i % 5}), f"a{i % 7}", i)
        assert len(await store.list_contents()) == len({(i % 5, i % 7) for i in range(50)})
    assert not [p for p in tmp_path.rglob(".tmp-*")]


async def test_a_value_stored_by_one_process_is_read_by_another(tmp_path: Path) -> None:
    writer = run_python(
        """
        import sys
        from adatastore import ShelveDataStore
        from components import SimpleComponent
        store = ShelveDataStore(sys.argv[1])
        store.store(SimpleComponent({"rate": 10}, input=SimpleComponent({"seed": 1})),
                    "spikes", {"times": [0.5, 1.5]})
        """,
        str(tmp_path),
    )
    assert writer.returncode == 0, writer.stderr
    async with AsyncShelveDataStore(tmp_path) as store:
        c = SimpleComponent({"rate": 10}, input=SimpleComponent({"seed": 1}))
        assert await store.retrieve(c, "spikes") == {"times": [0.5, 1.5]}
        await store.store(c, "reply", "from the parent")
    reader = run_python(
        """
        import sys
        from adatastore import ShelveDataStore
        from components import SimpleComponent
        store = ShelveDataStore(sys.argv[1])
        c = SimpleComponent({"rate": 10}, input=SimpleComponent({"seed": 1}))
        print(store.retrieve(c, "reply"))
        """,
        str(tmp_path),
    )
    assert reader.returncode == 0, reader.stderr
    assert reader.stdout.strip() == "from the parent"


def test_processes_writing_one_entry_never_tear_it(tmp_path: Path) -> None:
    """4 writers x 100 stores of values of different sizes to one entry, 1 reader."""
    writer = """
        import sys
        from adatastore import ShelveDataStore
        from components import SimpleComponent
        store = ShelveDataStore(sys.argv[1])
        me = int(sys.argv[2])
        for i in range(100):
            size = 1 + (me * 100 + i) * 37 % 5000
            store.store(SimpleComponent({"shared": True}), "v", (me, i, "x" * size))
        """
    reader = """
        import sys
        from adatastore import ShelveDataStore
        from components import SimpleComponent
        store = ShelveDataStore(sys.argv[1])
        seen = 0
        for _ in range(400):
            value = store.retrieve(SimpleComponent({"shared": True}), "v")
            if value is not None:
                me, i, text = value
                assert len(text) == 1 + (me * 100 + i) * 37 % 5000, value
                seen += 1
        print(seen)
        """
    env = subprocess_env()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(writer), str(tmp_path), str(n)], env=env
        )
        for n in range(4)
    ]
    read = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(reader), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert [p.wait(timeout=120) for p in processes] == [0, 0, 0, 0]
    assert read.returncode == 0, read.stderr
    assert not list(tmp_path.rglob(".tmp-*"))
    final = run_python(
        """
        import sys
        from adatastore import ShelveDataStore
        from components import SimpleComponent
        me, i, text = ShelveDataStore(sys.argv[1]).retrieve(SimpleComponent({"shared": True}), "v")
        print(i)
        """,
        str(tmp_path),
    )
    assert final.stdout.strip() == "99"


def test_file_size_limit_gives_storage_error_and_leaves_nothing(tmp_path: Path) -> None:
    result = run_python(
        """
        import resource, sys
        from pathlib import Path
        from adatastore import ShelveDataStore
        from adatastore.errors import StorageError
        from components import SimpleComponent
        store = ShelveDataStore(sys.argv[1])
        c = SimpleComponent({"x": 1})
        store.store(c, "v", "small and safe")
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
        try:
            store.store(c, "v", b"x" * 1_000_000)
        except StorageError as error:
            print("StorageError:", error)
        print(store.retrieve(c, "v"))
        print(sorted(p.name for p in Path(sys.argv[1]).rglob(".tmp-*")))
        """,
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("StorageError:")
    assert "larger than allowed" in lines[0]
    assert lines[1:] == ["small and safe", "[]"]


async def test_os_errors_become_storage_errors(tmp_path: Path) -> None:
    async with AsyncShelveDataStore(tmp_path / "root") as store:
        c = SimpleComponent({"x": 1})
        await store.store(c, "v", 1)
        entry = records(tmp_path / "root")[0].parent
        # Replace the entry directory with a file: writes into it must fail cleanly.
        for child in entry.iterdir():
            child.unlink()
        entry.rmdir()
        entry.write_text("in the way")
        with pytest.raises(StorageError):
            await store.store(c, "v", 2)
    assert isinstance(StorageError("x"), Exception)


async def test_reading_with_another_serializer_is_refused(tmp_path: Path) -> None:
    async with AsyncShelveDataStore(tmp_path) as first:
        await first.store(SimpleComponent({"x": 1}), "v", 1)
    async with AsyncShelveDataStore(tmp_path, serializer=JSONSerializer()) as second:
        with pytest.raises(SerializationError, match="'pickle' serializer"):
            await second.retrieve(SimpleComponent({"x": 1}), "v")


async def test_verify_on_read_false_skips_the_digest_but_verify_does_not(
    tmp_path: Path,
) -> None:
    c = SimpleComponent({"x": 1})
    async with AsyncShelveDataStore(tmp_path) as store:
        await store.store(c, "v", b"\x00" * 1000)
    (path,) = records(tmp_path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01  # inside the pickled bytes: still a valid pickle
    path.write_bytes(bytes(data))
    async with AsyncShelveDataStore(tmp_path, verify_on_read=False) as trusting:
        value = await trusting.retrieve(c, "v")
        assert value != b"\x00" * 1000  # the price of skipping the check
        assert not (await trusting.verify()).ok
    async with AsyncShelveDataStore(tmp_path) as checking:
        with pytest.raises(CorruptEntryError):
            await checking.retrieve(c, "v")


@pytest.mark.parametrize("first_write", [0, 1, 3, 7, 10, None])
def test_every_byte_is_written_whatever_writev_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first_write: int | None
) -> None:
    """A record's parts go out in one writev; a short one (a signal, a nearly full disk)
    is finished part by part from where it stopped, across part boundaries."""
    parts: list[bytes | bytearray | memoryview] = [
        b"abc",
        b"",
        b"defg",
        memoryview(b"hij"),
        bytearray(b"k" * 70_000),
    ]
    whole = b"".join(bytes(part) for part in parts)
    if first_write is not None:
        writev = os.writev

        def short_writev(fd: int, views: list[memoryview]) -> int:
            joined = b"".join(bytes(view) for view in views)
            return writev(fd, [joined[:first_write]])

        monkeypatch.setattr(os, "writev", short_writev)
    path = tmp_path / "record"
    _fsio.write_new(str(path), parts, durable=False)
    assert path.read_bytes() == whole


REPLACER = """
import os, sys
import adatastore
from components import SimpleComponent
url, how = sys.argv[1], sys.argv[2]
store = adatastore.open_store_sync(url)
component = SimpleComponent({"large": True})
for fill in b"abc":  # 9 MB records replaced
    store.store(component, "v", bytes([fill]) * 9_000_000)
if how == "forkserver":  # a multiprocessing worker leaves by os._exit, past atexit
    import multiprocessing, replacer
    process = multiprocessing.get_context("forkserver").Process(
        target=replacer.replace_with_d, args=(url,)
    )
    process.start()
    process.join()
    assert process.exitcode == 0
    store.store(component, "v", b"e" * 9_000_000)
elif how == "fork":
    pid = os.fork()
    if pid == 0:  # the child replaces one too, then exits without closing
        store.store(component, "v", b"d" * 9_000_000)
        os._exit(0 if store.retrieve(component, "v") == b"d" * 9_000_000 else 1)
    assert os.waitpid(pid, 0)[1] == 0
    store.store(component, "v", b"e" * 9_000_000)
print(store.retrieve(component, "v")[:1].decode(), flush=True)
if how == "close":
    store.close()
"""


@pytest.mark.parametrize("backend", ["files", "sqlite", "django-sqlite"])
@pytest.mark.parametrize("how", ["close", "exit", "fork", "forkserver"])
def test_large_replaced_records_are_all_removed(tmp_path: Path, backend: str, how: str) -> None:
    """Replaced large records leave no file behind, whether the store is closed or the
    process just exits (also a forked child, and a multiprocessing worker, which leaves by
    os._exit): each is removed before the store that replaced it returns."""
    url = {
        "files": f"file://{tmp_path}/files",
        "sqlite": f"sqlite:///{tmp_path}/store.db",
        "django-sqlite": f"django+sqlite:///{tmp_path}/django.db?data_root_dir={tmp_path}/data",
    }[backend]
    result = run_python(REPLACER, url, how)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("e" if how.startswith("fork") else "c")
    records = [p for p in tmp_path.rglob("*") if p.is_file() and p.stat().st_size >= 9_000_000]
    assert len(records) == 1, records
