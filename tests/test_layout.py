"""The shape of the package, checked: the private modules live in layer folders, each
layer imports only from the layers below it, imports form a DAG, no module reaches into
another module's underscore names, and modules stay small enough to read at once.

An AST walk over ``src/adatastore`` (no import of the package), so a cycle shows here
even when lazy imports would hide it at run time.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PACKAGE = Path(__file__).parent.parent / "src" / "adatastore"

# No module is longer than this, and none is exempt: a longer one is split along a seam.
MAX_LINES = 600


# The layers, bottom first (docs/architecture.rst, "The tree", has a paragraph for each):
# a module may import from its own layer and the layers below it, never from one above.
# Public modules of the package root sit in the layer of what they are made of.
LAYERS: list[tuple[str, set[str]]] = [
    ("the base", {"errors", "stats", "interface", "_version"}),
    ("_runtime", {"_runtime"}),
    ("values", {"serializers", "signing", "component", "records"}),
    ("_storage", {"_storage"}),
    ("the back-end protocol", {"backend"}),
    ("_keys", {"_keys", "keygenerators"}),
    ("_codec", {"_codec", "provenance"}),
    ("backends", {"backends"}),
    ("_core", {"_core"}),
    ("_compute", {"_compute"}),
    ("_facade", {"_facade"}),
    ("the facade", {"store", "sync", "decorators"}),
    ("_stores", {"_stores"}),
    ("the front", {"urls", "demo", "cli", "__main__", ""}),
]
ARCHITECTURE = PACKAGE.parent.parent / "docs" / "architecture.rst"


def layer_of(module: str) -> int:
    top = module.removeprefix("adatastore").removeprefix(".").split(".")[0]
    for index, (_, members) in enumerate(LAYERS):
        if top in members:
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and the architecture")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def run_time_nodes(tree: ast.AST, old_paths: bool = True) -> Iterator[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (annotations only), and without
    `old_paths` those of a module-level ``__getattr__`` (PEP 562), which serves an import
    path of an earlier release from wherever its name lives now."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and is_type_checking(node.test):
            yield from (n for child in node.orelse for n in [child, *run_time_nodes(child)])
            continue
        if not old_paths and isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            continue
        yield node
        yield from run_time_nodes(node, old_paths)


def imports_of(
    name: str, path: Path, known: dict[str, Path], old_paths: bool = True
) -> Iterator[tuple[str, str]]:
    """(module imported, name imported from it or "") for each run-time import."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in run_time_nodes(ast.parse(path.read_text()), old_paths):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("adatastore"):
                    yield alias.name, ""
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("adatastore"):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in known:  # `from . import _ops`: the module itself
                    yield submodule, ""
                else:
                    yield target, alias.name


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target, _ in imports_of(name, path, known, old_paths=False):
            if target in known and target != name:
                edges[name].add(target)
    return edges


def test_imports_form_a_dag() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    # the facade's layers point one way
    assert "adatastore.store" not in edges["adatastore._compute.warm"]
    assert "adatastore.store" not in edges["adatastore._compute.flights"]
    assert not {m for m in edges["adatastore.sync"] if m.startswith("adatastore.backends")}


def test_engines_import_neither_the_facade_nor_the_named_stores() -> None:
    """A module of ``backends/`` is an engine: the facade holds it, never the reverse
    (the named classes of its old import paths come from ``_stores`` only when asked)."""
    known = modules()
    above = ("adatastore.store", "adatastore.sync", "adatastore._stores", "adatastore.urls")
    offences = sorted(
        f"{name} imports {target}"
        for name, path in known.items()
        if name.startswith("adatastore.backends")
        for target, _ in imports_of(name, path, known, old_paths=False)
        if target.startswith(above)
    )
    assert not offences, offences
    engines = [
        name
        for name, path in known.items()
        if name.startswith("adatastore.backends")
        and any(
            isinstance(node, ast.ClassDef)
            and any(ast.unparse(base).endswith("Backend") for base in node.bases)
            for node in ast.parse(path.read_text()).body
        )
    ]
    assert len(engines) >= 5, engines  # memory, files, sqlite, objects, django


# A back-end's record I/O: what an operation of the core asks its driver for.
RECORD_IO = {
    f"{prefix}{name}"
    for prefix in ("", "blocking_")
    for name in (
        "read",
        "read_many",
        "read_mapped",
        "read_many_mapped",
        "write",
        "write_many",
        "contains",
        "contains_many",
        "delete_listed",
        "entries",
        "last_used",
        "touch_many",
    )
}
DRIVERS = "adatastore._core.ops"
# Diagnostics that hand back no value and decide nothing about a hit: ``explain`` reads a
# record's head and lists the store to say why a lookup missed.
DIAGNOSTICS = {"adatastore._core.explain"}


def test_compute_and_the_core_reach_records_only_through_the_drivers() -> None:
    """One read path: compute, warm-up and eviction read, check, list and delete through
    the operations of the core, which the two drivers run (the compute host had its own
    reads of entries to check; the limiter listed and deleted by itself)."""
    offences = sorted(
        f"{name}:{node.lineno} calls .{node.func.attr}()"
        for name, path in modules().items()
        if name.startswith(("adatastore._core", "adatastore._compute"))
        and name != DRIVERS
        and name not in DIAGNOSTICS
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in RECORD_IO
        and "backend" in ast.unparse(node.func.value)
    )
    assert not offences, offences


def test_private_modules_live_in_layer_folders() -> None:
    loose = sorted(
        path.name
        for path in PACKAGE.glob("_*.py")
        if path.name not in ("__init__.py", "__main__.py")
    )
    assert loose == ["_version.py"], f"private modules at the package root: {loose}"
    folders = {path.parent.name for path in PACKAGE.glob("_*/__init__.py")}
    named = {member for _, members in LAYERS for member in members if member.startswith("_")}
    assert folders <= named, f"layer folders not in LAYERS: {folders - named}"


def test_each_layer_imports_only_downwards() -> None:
    known = modules()
    upward = sorted(
        f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for name, path in known.items()
        for target, _ in imports_of(name, path, known, old_paths=False)
        if target in known and layer_of(target) > layer_of(name)
    )
    assert not upward, upward


def test_the_architecture_page_describes_every_layer_folder() -> None:
    text = ARCHITECTURE.read_text()
    folders = sorted(path.parent.name for path in PACKAGE.glob("*/__init__.py"))
    undescribed = [folder for folder in folders if f"``{folder}/``" not in text]
    assert not undescribed, f"docs/architecture.rst does not describe {undescribed}"


def test_no_module_imports_another_modules_private_names() -> None:
    known = modules()
    offences: list[str] = []
    for name, path in known.items():
        for target, imported in imports_of(name, path, known):
            if imported.startswith("_") and not imported.startswith("__") and target != name:
                offences.append(f"{name} imports {target}.{imported}")
    assert not offences, offences


def test_no_module_reaches_into_another_modules_private_attributes() -> None:
    """``module._name`` on an imported adatastore module (``self._x`` is the class's own)."""
    known = modules()
    offences: list[str] = []
    for name, path in known.items():
        tree = ast.parse(path.read_text())
        imported_modules = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level
            for alias in node.names
        }
        offences.extend(
            f"{name}:{node.lineno} {node.value.id}.{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in imported_modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        )
    assert not offences, offences


def test_modules_are_small_enough_to_read_at_once() -> None:
    long = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            long[relative] = lines
    assert not long, f"over {MAX_LINES} lines: {long}"
    store_lines = len((PACKAGE / "store.py").read_text().splitlines())
    assert store_lines <= 400, f"the facade is {store_lines} lines"


def test_an_instances_public_attributes_are_the_user_api(tmp_path: Path) -> None:
    """What a user's autocompletion shows of a store: the class's API, and of the
    instance only `backend` and `stats` (async) or `async_store` (blocking). The
    operations' machinery (identity, codec, policy, context, compute host, lifecycle)
    sits behind the one private seam ``_parts``, which the blocking layer and the CLI use."""
    import adatastore
    from adatastore import SyncDataStore

    stores: list[Any] = [
        adatastore.AsyncSQLiteDataStore(tmp_path / "a.sqlite"),
        adatastore.AsyncShelveDataStore(tmp_path / "files"),
        adatastore.AsyncMemoryDataStore(),
        adatastore.AsyncObjectDataStore("bucket", endpoint="http://127.0.0.1:9"),
        adatastore.SQLiteDataStore(tmp_path / "b.sqlite"),
        adatastore.ShelveDataStore(str(tmp_path / "more")),
        adatastore.MemoryDataStore(),
    ]
    try:
        for store in stores:
            own = {name for name in vars(store) if not name.startswith("_")}
            expected = {"async_store"} if isinstance(store, SyncDataStore) else {"backend", "stats"}
            assert own == expected, (type(store).__name__, own)
            shown = {name for name in dir(store) if not name.startswith("_")}
            plumbing = {"codec", "compute_host", "context", "identity", "lifecycle", "policy"}
            assert not shown & plumbing, (type(store).__name__, shown & plumbing)
    finally:
        for store in stores:
            if isinstance(store, SyncDataStore):
                store.close()
