"""The blocking API: legacy scripts, running event loops, threads, fork and exit."""

from __future__ import annotations

import asyncio
import multiprocessing
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from components import SimpleComponent
from helpers import run_python, subprocess_env

import adatastore
from adatastore import (
    MemoryDataStore,
    ShelveDataStore,
    SQLiteDataStore,
    SyncDataStore,
    keygenerators,
)
from adatastore._runtime import portal as _portal
from adatastore.errors import ConfigurationError, StoreClosedError

LEGACY_SCRIPT = """
from adatastore import *   # was: from NeuroTools.datastore import *
from parameters import ParameterSet
import sys


class SimpleComponent(object):
    def __init__(self, parameters, input=None):
        self.parameters = parameters
        self.input = input
    version = "$Revision: 1 $"


root = sys.argv[1]
for key_generator in (keygenerators.hash_pickle, keygenerators.join_with_underscores):
    datastore = ShelveDataStore(root_dir=root, key_generator=key_generator)
    p = ParameterSet({'a': 2, 'b': 3, 'c': {'d': 4.5}})
    c1 = SimpleComponent(p)
    c2 = SimpleComponent(ParameterSet({'x': 1}), input=c1)
    assert datastore.retrieve(c1, 'data') is None
    datastore.store(c1, 'data', range(0, 10, 2))
    datastore.store(c2, 'data', [1, 2, 3])
    assert list(datastore.retrieve(c1, 'data')) == [0, 2, 4, 6, 8]
    assert datastore.retrieve(c2, 'data') == [1, 2, 3]
    c1.parameters.a = 99   # another state: another entry
    assert datastore.retrieve(c1, 'data') is None
    assert datastore.retrieve(c2, 'data') is None  # its input changed
print(len(ShelveDataStore(root).list_contents()), "entries")
"""


@pytest.mark.parametrize("existing", [True, False], ids=["existing-dir", "new-dir"])
def test_legacy_script_runs_with_only_its_import_changed(tmp_path: Path, existing: bool) -> None:
    root = tmp_path / "store"
    if existing:
        root.mkdir()
        (root / "someone-elses-file.txt").write_text("untouched")
    result = subprocess.run(
        [sys.executable, "-c", LEGACY_SCRIPT, str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "4 entries"
    if existing:
        assert (root / "someone-elses-file.txt").read_text() == "untouched"


def test_star_import_exposes_the_legacy_names() -> None:
    namespace: dict[str, object] = {}
    exec("from adatastore import *", namespace)
    for name in ("ShelveDataStore", "keygenerators", "AsyncDataStore", "AsyncShelveDataStore"):
        assert name in namespace
    assert adatastore.keygenerators.hash_pickle is keygenerators.hash_pickle


def test_blocking_methods(tmp_path: Path) -> None:
    with ShelveDataStore(tmp_path) as store:
        c = SimpleComponent({"a": 1})
        assert not store.contains(c, "x")
        store.store(c, "x", {"v": 1})
        assert store.contains(c, "x")
        assert store.retrieve(c, "x") == {"v": 1}
        assert store.retrieve(c, "y", default="d") == "d"
        assert [e.attribute_name for e in store.list_contents()] == ["x"]
        assert store.key_of(c) == keygenerators.canonical_hash(c)
        assert store.root_dir == str(tmp_path)
        assert store.delete(c) == 1
    with pytest.raises(StoreClosedError):
        store.retrieve(c, "x")


def test_constructor_fails_fast_on_bad_root(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigurationError, match="not a directory"):
        ShelveDataStore(tmp_path / "file")


def test_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    """As in a Jupyter cell: a loop runs in this thread, and blocking calls still work."""
    store = ShelveDataStore(tmp_path)
    c = SimpleComponent({"a": 1})

    async def cell() -> object:
        store.store(c, "x", "from inside a loop")
        return store.retrieve(c, "x")

    assert asyncio.run(cell()) == "from inside a loop"


def test_works_from_many_threads(tmp_path: Path) -> None:
    store = ShelveDataStore(tmp_path)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                c = SimpleComponent({"thread": n, "i": i})
                store.store(c, "v", (n, i))
                assert store.retrieve(c, "v") == (n, i)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert len(store.list_contents()) == 160


def test_calling_blocking_api_from_the_portal_loop_is_a_clear_error() -> None:
    store = MemoryDataStore()

    async def misuse() -> None:
        store.list_contents()  # through the portal (store and retrieve run in this thread)

    with pytest.raises(ConfigurationError, match="await the Async"):
        _portal.call(misuse)


def test_wraps_any_async_store() -> None:
    store = SyncDataStore(adatastore.AsyncMemoryDataStore())
    store.store(SimpleComponent({"a": 1}), "x", 1)
    assert store.retrieve(SimpleComponent({"a": 1}), "x") == 1


def _child_uses_store(
    root: str, inherited: ShelveDataStore, queue: multiprocessing.Queue[object]
) -> None:
    store = ShelveDataStore(root)
    store.store(SimpleComponent({"child": 1}), "x", "from the child")
    queue.put(store.retrieve(SimpleComponent({"parent": 1}), "x"))
    queue.put(inherited.retrieve(SimpleComponent({"parent": 1}), "x"))


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_gets_a_working_portal(tmp_path: Path) -> None:
    store = ShelveDataStore(tmp_path)
    store.store(SimpleComponent({"parent": 1}), "x", "from the parent")  # portal running
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[object] = context.Queue()
    child = context.Process(target=_child_uses_store, args=(str(tmp_path), store, queue))
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == "from the parent"
    assert queue.get(timeout=5) == "from the parent"  # through the store the child inherited
    assert store.retrieve(SimpleComponent({"child": 1}), "x") == "from the child"


def test_interpreter_exits_promptly_with_open_stores(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from adatastore import ShelveDataStore, MemoryDataStore
        from components import SimpleComponent
        kept_open = ShelveDataStore(sys.argv[1])
        kept_open.store(SimpleComponent({"a": 1}), "x", 1)
        memory = MemoryDataStore()
        memory.store(SimpleComponent({"a": 1}), "x", 1)
        print("done")
        """
    )
    result = run_python(code, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert result.stderr == ""


def test_the_files_store_blocks_in_the_callers_thread(tmp_path: Path) -> None:
    """ShelveDataStore's I/O is blocking anyway: store/retrieve/contains need no loop."""
    code = """
        import sys, threading
        from adatastore import ShelveDataStore
        from components import SimpleComponent
        store = ShelveDataStore(sys.argv[1])
        store.store(SimpleComponent({"a": 1}), "x", [1, 2])
        assert store.retrieve(SimpleComponent({"a": 1}), "x") == [1, 2]
        assert store.contains(SimpleComponent({"a": 1}), "x")
        store.close()
        print(sorted(t.name for t in threading.enumerate()))
        """
    result = run_python(code, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['MainThread']"
    with ShelveDataStore(tmp_path) as store:  # and the async view agrees
        assert store.retrieve(SimpleComponent({"a": 1}), "x") == [1, 2]
        assert store.delete(SimpleComponent({"a": 1})) == 1


def test_sqlite_reads_run_in_the_callers_thread_beside_writers(tmp_path: Path) -> None:
    """SQLiteDataStore reads through a connection of the calling thread and stores through
    the writer's thread, with no event loop in between; readers in 4 threads see whole
    values."""
    store = SQLiteDataStore(tmp_path / "s.db")
    components = [SimpleComponent({"n": n}) for n in range(50)]
    store.store_many([(c, "v", [n] * 1000) for n, c in enumerate(components)])
    portal_calls = 0
    real_call = _portal.call

    def counting_call(*args: object, **kwargs: object) -> object:
        nonlocal portal_calls
        portal_calls += 1
        return real_call(*args, **kwargs)  # type: ignore[arg-type]

    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                for n, c in enumerate(components):
                    value = store.retrieve(c, "v")
                    assert value in ([n] * 1000, [-n] * 1000), value[:3]
                values = store.retrieve_many([(c, "v") for c in components])
                assert [abs(v[0]) for v in values] == list(range(50))
        except BaseException as error:
            errors.append(error)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    _portal.call = counting_call  # type: ignore[assignment]
    try:
        for round_number in range(5):
            sign = -1 if round_number % 2 == 0 else 1
            for n, c in enumerate(components):
                store.store(c, "v", [sign * n] * 1000)
        assert store.contains(components[0], "v")
        assert not store.contains(SimpleComponent({"n": -1}), "v")
    finally:
        stop.set()
        for thread in readers:
            thread.join(timeout=60)
        _portal.call = real_call
    assert not errors, errors[0]
    assert portal_calls == 0  # nothing went through adatastore's loop
    readers_pool = store.async_store.backend._readers
    assert readers_pool is not None
    assert 1 <= len(readers_pool._all) <= 5  # at most one per reader
    store.close()
    assert readers_pool._all == []
    with pytest.raises(StoreClosedError):
        store.retrieve(components[0], "v")


def test_a_forked_child_reads_sqlite_through_its_own_connection(tmp_path: Path) -> None:
    store = SQLiteDataStore(tmp_path / "s.db")
    store.store(SimpleComponent({"parent": 1}), "x", "from the parent")
    assert store.retrieve(SimpleComponent({"parent": 1}), "x") == "from the parent"
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[object] = context.Queue()
    child = context.Process(target=_child_reads_sqlite, args=(store, queue))
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == ("from the parent", True)
    store.close()


def _child_reads_sqlite(store: SQLiteDataStore, queue: multiprocessing.Queue[object]) -> None:
    inherited = store.async_store.backend._readers
    value = store.retrieve(SimpleComponent({"parent": 1}), "x")
    mine = store.async_store.backend._readers
    queue.put((value, mine is not None and mine is not inherited and len(mine._all) == 1))
