"""Code fingerprints (issue 19): each entry's provenance records a hash of its component
type's source (and of the compute function's), and the git commit of the repository
holding the module, read from ``.git`` files. A code change without a version bump is
explained and warned about once per type; ``key_includes_code=True`` gives new keys.

The component module is written to a temporary package, and each "run" is a new Python
process importing it, as a user's edited code would be.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path
from typing import Any

import pytest
from components import PlainComponent
from helpers import run_python

from adatastore import AsyncSQLiteDataStore, StaleCodeWarning, code_version

pytestmark = pytest.mark.anyio

MODEL = """
class Network:
    version = "1.2"

    def __init__(self, n):
        self.parameters = {"n": n}
        self.input = None

    def rate(self):
        return self.parameters["n"] * 2  # EDIT


def simulate(network):
    return network.rate()  # COMPUTE
"""

RUN = """
import json, sys, warnings
from functools import partial
sys.path.insert(0, sys.argv[1])
import model
from adatastore import open_store_sync
options = json.loads(sys.argv[3])
action = sys.argv[4]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with open_store_sync(sys.argv[2], **options) as store:
        out = {}
        if action == "store":
            for n in (1, 2):
                network = model.Network(n)
                store.get_or_compute(network, "rate", partial(model.simulate, network))
            p = store.provenance(model.Network(1), "rate")
            out["code"], out["compute_code"], out["commit"] = p.code, p.compute_code, p.commit
        elif action == "read":
            out["values"] = [store.retrieve(model.Network(n), "rate") for n in (1, 2)]
            out["explain"] = str(store.explain(model.Network(1), "rate"))
        elif action == "compute":
            networks = [model.Network(n) for n in (1, 2)]
            out["values"] = [
                store.get_or_compute(network, "rate", partial(model.simulate, network))
                for network in networks
            ]
        elif action == "warm":
            report = store.warm([model.Network(n) for n in (1, 2, 2)], "rate", model.simulate)
            out["stale"], out["already"] = report.stale, report.already_stored
        elif action in ("async-warm", "async-read"):
            import asyncio
            from adatastore import open_store

            async def main():
                async with await open_store(sys.argv[2], **options) as astore:
                    networks = [model.Network(n) for n in (1, 2)]
                    if action == "async-read":
                        return [await astore.retrieve(network, "rate") for network in networks]
                    report = await astore.warm(networks, "rate", model.simulate)
                    return report.stale

            out["async"] = asyncio.run(main())
        out["code_version"] = __import__("adatastore").code_version(model.Network)
stale = [w for w in caught if w.category.__name__ == "StaleCodeWarning"]
out["warnings"] = [str(w.message) for w in stale]
out["where"] = [w.filename for w in stale]  # the user's line: this script, "<string>"
print(json.dumps(out))
"""


def run(package: Path, url: str, action: str, **options: object) -> dict[str, Any]:
    done = run_python(RUN, str(package), url, json.dumps(options), action)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.fixture
def package(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "model.py").write_text(MODEL)
    return directory


def edit(package: Path, old: str, new: str) -> None:
    path = package / "model.py"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    for cache in package.rglob("__pycache__"):
        shutil.rmtree(cache)


def git(package: Path, *arguments: str) -> str:
    environment = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    done = subprocess.run(
        ["git", *arguments],
        cwd=package,
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    return done.stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to make a repository")
def test_an_edit_without_a_version_bump_is_explained_and_warned_once(
    package: Path, tmp_path: Path
) -> None:
    git(package, "init", "-q")
    git(package, "add", "model.py")
    git(package, "commit", "-q", "-m", "first")
    commit = git(package, "rev-parse", "HEAD")
    url = f"sqlite:///{tmp_path}/cache.db"
    stored = run(package, url, "store")
    assert stored["commit"] == commit
    assert isinstance(stored["code"], str)
    assert len(stored["code"]) == 16
    assert isinstance(stored["compute_code"], str)
    assert stored["warnings"] == []
    unchanged = run(package, url, "read")
    assert unchanged["values"] == [2, 4]
    assert unchanged["warnings"] == []
    assert "changed" not in str(unchanged["explain"])
    assert unchanged["code_version"] == stored["code_version"]

    edit(package, "* 2  # EDIT", "* 3  # EDIT")
    changed = run(package, url, "read")
    assert changed["values"] == [2, 4]  # the old results: the version says they stand
    assert len(changed["warnings"]) == 1  # two hits, one warning for the type
    message = str(changed["warnings"][0])
    assert "the code of model.Network changed" in message
    assert "version is still '1.2'" in message
    assert commit[:12] in message
    assert "the code of model.Network changed" in str(changed["explain"])
    assert changed["code_version"] != stored["code_version"]


def test_a_changed_compute_function_is_warned_about(package: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cache.db"
    run(package, url, "store")
    edit(package, "return network.rate()  # COMPUTE", "return network.rate() + 1  # COMPUTE")
    computed = run(package, url, "compute")
    assert computed["values"] == [2, 4]
    [message] = computed["warnings"]
    assert "its compute function model.simulate changed" in str(message)
    assert "the code of model.Network" not in str(message)
    silent = run(package, url, "compute", warn_stale_code=False)
    assert silent["warnings"] == []


@pytest.mark.slow
def test_key_includes_code_gives_a_miss_after_an_edit(package: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cache.db"
    run(package, url, "store", key_includes_code=True)
    assert run(package, url, "read", key_includes_code=True)["values"] == [2, 4]
    assert run(package, url, "read")["values"] == [None, None]  # other keys than plain ones
    edit(package, "* 2  # EDIT", "* 3  # EDIT")
    assert run(package, url, "read", key_includes_code=True)["values"] == [None, None]
    computed = run(package, url, "compute", key_includes_code=True)
    assert computed["values"] == [3, 6]
    assert computed["warnings"] == []


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to make a repository")
def test_the_commit_is_read_from_packed_refs_worktrees_and_a_detached_head(
    package: Path, tmp_path: Path
) -> None:
    from adatastore._keys.fingerprints import git_commit

    git(package, "init", "-q")
    git(package, "add", "model.py")
    git(package, "commit", "-q", "-m", "first")
    first = git(package, "rev-parse", "HEAD")
    git(package, "pack-refs", "--all")
    assert git_commit(str(package)) == first
    (package / "sub").mkdir()
    assert git_commit(str(package / "sub")) == first  # found from a subdirectory
    git(package, "commit", "-q", "--allow-empty", "-m", "second")
    second = git(package, "rev-parse", "HEAD")
    git(package, "checkout", "-q", "--detach", first)
    assert git_commit(str(package / ".")) == first
    worktree = tmp_path / "worktree"
    git(package, "worktree", "add", "-q", str(worktree), second)
    assert (worktree / ".git").is_file()
    assert git_commit(str(worktree)) == second
    assert git_commit(str(tmp_path / "nowhere")) is None  # no repository above


async def test_classes_without_source_have_no_fingerprint_and_no_error(tmp_path: Path) -> None:
    namespace: dict[str, object] = {}
    exec(  # a class typed at a REPL: no file to read its source from
        textwrap.dedent(
            """
            class Typed:
                version = 1
                def __init__(self):
                    self.parameters = {"n": 1}
                    self.input = None
            """
        ),
        namespace,
    )
    made = type("Made", (PlainComponent,), {"__module__": "nowhere"})  # no module at all
    module = types.ModuleType("a_module_component")  # a module as a component
    module.parameters, module.input, module.version = {"n": 2}, None, 1  # type: ignore[attr-defined]
    components = [namespace["Typed"](), made({"n": 3}), module]  # type: ignore[operator]
    import _bisect  # a C extension module: no source to read

    assert code_version(_bisect) == "code:unknown"
    assert code_version(type(iter([]))) == "code:unknown"  # a C type
    async with AsyncSQLiteDataStore(tmp_path / "s.db") as store:
        with warnings.catch_warnings():
            warnings.simplefilter("error", StaleCodeWarning)
            for number, component in enumerate(components):
                await store.store(component, "v", number)
                assert await store.retrieve(component, "v") == number
                assert await store.get_or_compute(component, "v", lambda: -1) == number
                provenance = await store.provenance(component, "v")
                assert provenance is not None
                assert provenance.code is None
                explanation = await store.explain(component, "v")
                assert explanation.hit
                assert explanation.code_changed is None
    assert code_version(namespace["Typed"]) == "code:unknown"


async def test_code_fingerprints_are_recorded_for_the_tests_own_components(
    tmp_path: Path,
) -> None:
    async with AsyncSQLiteDataStore(tmp_path / "s.db", key_includes_code=True) as store:
        component = PlainComponent({"n": 5})
        await store.store(component, "v", 1)
        provenance = await store.provenance(component, "v")
        assert provenance is not None
        assert provenance.code is not None
        assert provenance.compute_code is None  # stored, not computed
        assert store.key_of(component) != AsyncSQLiteDataStore(tmp_path / "t.db").key_of(component)
        chained = PlainComponent({"n": 6}, input=component)
        assert await store.get_or_compute(chained, "v", lambda: 2) == 2
        assert await store.retrieve(chained, "v") == 2


@pytest.mark.parametrize("scheme", ["sqlite", "django+sqlite"])
@pytest.mark.slow
def test_warm_warns_of_stale_entries_and_counts_them(
    package: Path, tmp_path: Path, scheme: str
) -> None:
    """warm served 200 entries made by other code as "already stored", silently; and the
    warning of the others named _core/staleness.py (or asyncio) instead of the user's line."""
    url = f"{scheme}:///{tmp_path}/cache.db"
    run(package, url, "store")
    fresh = run(package, url, "warm")
    assert (fresh["already"], fresh["stale"], fresh["warnings"]) == (2, 0, [])
    edit(package, "* 2  # EDIT", "* 3  # EDIT")
    for action in ("warm", "read", "compute", "async-warm", "async-read"):
        found = run(package, url, action)
        assert len(found["warnings"]) == 1, (action, found)
        assert "the code of model.Network changed" in found["warnings"][0]
        assert found["where"] == ["<string>"], (action, found["where"])
        if action == "warm":
            assert found["stale"] == 2
        if action == "async-warm":
            assert found["async"] == 2
    silent = run(package, url, "warm", warn_stale_code=False)
    assert (silent["warnings"], silent["stale"]) == ([], 0)


def test_ls_stale_says_that_main_classes_cannot_be_checked(tmp_path: Path) -> None:
    """`adatastore ls --stale` on entries of a script's classes printed "0 entries"."""
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from adatastore import open_store_sync

            class Network:
                version = 1
                def __init__(self, n):
                    self.parameters, self.input = {"n": n}, None

            if __name__ == "__main__":
                with open_store_sync(sys.argv[1]) as store:
                    for n in range(3):
                        store.store(Network(n), "rate", n)
            """
        )
    )
    url = f"sqlite:///{tmp_path}/cache.db"
    done = subprocess.run(
        [sys.executable, str(script), url], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    for command in ("ls", "stats"):
        shown = subprocess.run(
            [sys.executable, "-m", "adatastore", command, "--stale", "--url", url],
            capture_output=True,
            text=True,
            check=False,
        )
        assert shown.returncode == 0, shown.stderr
        assert "not checked: 3 entries of __main__.Network" in shown.stderr
        assert "__main__ cannot be imported" in shown.stderr
