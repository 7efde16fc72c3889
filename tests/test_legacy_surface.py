"""What a script written for NeuroTools' ``datastore`` can touch keeps working, with only
its import lines changed (``from NeuroTools.datastore import *`` → ``from adatastore
import *``).

The cases of the original module's own test file are here in our words: a store in an
existing and in a new root directory (read through ``_root_dir``), ``range`` values,
``hash_pickle`` and ``join_with_underscores`` keys, chains of components, a
``ParameterSet`` carrying a ``_url``, the legacy Django form; and what else a script sees:
the names a star import gives, ``AbstractDataStore``, ``full_type``, ``retrieve`` giving
None, stores released without a ``close()``.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import run_python
from parameters import ParameterSet

import adatastore


class DummyComponent:
    """As in the original test file: a ParameterSet with a _url, a float version."""

    def __init__(self, input: Any = None) -> None:
        self.parameters = ParameterSet({"a": 1, "b": 2})
        self.parameters._url = "http://www.example.com/parameters"
        self.version = 0.1
        self.input = input
        self.data = range(1000)


def test_a_star_import_gives_the_original_names() -> None:
    names: dict[str, Any] = {}
    exec("from adatastore import *", names)
    for name in ("ShelveDataStore", "DjangoORMDataStore", "keygenerators", "interface"):
        assert name in names, name
    assert callable(names["keygenerators"].hash_pickle)
    assert callable(names["keygenerators"].join_with_underscores)
    assert callable(names["keygenerators"].full_type)
    assert issubclass(names["ShelveDataStore"], names["interface"].AbstractDataStore)


def test_an_existing_root_dir_and_its_root_dir_attribute(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "someone-else.txt").write_text("kept")
    store = adatastore.ShelveDataStore(str(existing))
    assert store._root_dir == str(existing)  # as given, as the original kept it
    assert os.path.exists(store._root_dir)
    assert (existing / "someone-else.txt").read_text() == "kept"


def test_a_new_root_dir_is_made(tmp_path: Path) -> None:
    new = tmp_path / "test_datastore"
    assert not new.exists()
    store = adatastore.ShelveDataStore(str(new))
    assert os.path.isdir(store._root_dir)


def test_a_root_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(adatastore.ConfigurationError, match="not a directory"):
        adatastore.ShelveDataStore(str(path))


@pytest.mark.parametrize(
    "generator",
    [None, adatastore.keygenerators.hash_pickle, adatastore.keygenerators.join_with_underscores],
)
def test_store_retrieve_with_each_key_generator(tmp_path: Path, generator: Any) -> None:
    """range values, a ParameterSet with a _url, positional key_generator, and a chain."""
    store = (
        adatastore.ShelveDataStore(str(tmp_path))
        if generator is None
        else adatastore.ShelveDataStore(str(tmp_path), generator)
    )
    if generator is not None:
        assert store._generate_key is generator
    first = DummyComponent()
    second = DummyComponent(input=first)
    assert store.retrieve(first, "data") is None
    store.store(first, "data", first.data)
    assert store.retrieve(first, "data") == first.data
    store.store(second, "data", second.data)
    assert store.retrieve(second, "data") == second.data
    assert store.key_of(second) != store.key_of(first)


def test_full_type_of_a_component_and_of_a_module() -> None:
    assert adatastore.keygenerators.full_type(DummyComponent()) == (
        "test_legacy_surface.DummyComponent"
    )
    assert adatastore.keygenerators.full_type(os) == "os"


def test_a_back_end_of_a_legacy_script_subclasses_abstract_data_store() -> None:
    from adatastore.interface import AbstractDataStore

    class DictStore(AbstractDataStore):
        def __init__(self) -> None:
            self.data: dict[tuple[str, str], Any] = {}

        def store(self, component: Any, attribute_name: str, data: Any) -> None:
            self.data[adatastore.keygenerators.hash_pickle(component), attribute_name] = data

        def retrieve(self, component: Any, attribute_name: str) -> Any:
            key = adatastore.keygenerators.hash_pickle(component)
            return self.data.get((key, attribute_name))

    store = DictStore()
    store.store(DummyComponent(), "data", [1, 2])
    assert store.retrieve(DummyComponent(), "data") == [1, 2]
    with pytest.raises(NotImplementedError):
        AbstractDataStore().retrieve(DummyComponent(), "data")


def test_a_blocking_store_never_closed_is_released_when_collected(tmp_path: Path) -> None:
    """The original API has no close(): dropping the store releases its lock file."""
    store = adatastore.ShelveDataStore(str(tmp_path))
    store.get_or_compute(DummyComponent(), "data", lambda: [1])  # opens the lock file
    lock_fd = store.async_store.backend._lock_file._fd  # type: ignore[union-attr]
    assert lock_fd is not None
    del store
    gc.collect()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(lock_fd)  # closed


LEGACY_DJANGO = """
import os, shutil, sys, unittest
from adatastore import *
from parameters import ParameterSet

root = sys.argv[1]

class DummyComponent(object):
    def __init__(self, input=None):
        self.parameters = ParameterSet({'a': 1, 'b': 2})
        self.parameters._url = "http://www.example.com/parameters"
        self.version = 0.1
        self.input = input
        self.data = range(1000)

class DjangoORMDataStoreTest(unittest.TestCase):
    def setUp(self):
        self.ds = DjangoORMDataStore(
            database_parameters={'DATABASE_ENGINE': 'sqlite3',
                                 'DATABASE_NAME': root + '/test_datastore.db'},
            data_root_dir=root + '/test_datastore_django')

    def tearDown(self):
        if os.path.exists(root + '/test_datastore.db'):
            os.remove(root + '/test_datastore.db')
        if os.path.exists(root + '/test_datastore_django'):
            shutil.rmtree(root + '/test_datastore_django')

    def test_store_retrieve(self):
        c = DummyComponent()
        self.ds.store(c, 'data', c.data)
        self.assertEqual(c.data, self.ds.retrieve(c, 'data'))

    def test_chain(self):
        c = DummyComponent(input=DummyComponent())
        self.ds.store(c, 'data', c.data)
        self.assertEqual(c.data, self.ds.retrieve(c, 'data'))

unittest.main(argv=["legacy"], exit=False)
print("left:", sorted(os.listdir(root)))
"""


def test_the_legacy_django_form_leaves_no_files_behind(tmp_path: Path) -> None:
    """The original's (commented-out) Django test, run as a script: two tests, each
    tearing its database down; nothing of theirs is left once the process has ended."""
    result = run_python(LEGACY_DJANGO, str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stderr
    leftovers = [name for name in os.listdir(tmp_path) if name.startswith("test_datastore")]
    assert leftovers == [], leftovers
