"""The ``adatastore`` console script, run for real as a command in a process of its own
(forked from one that imported Python and adatastore once: `cli_zygote`), on every
back-end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cli_zygote
import pytest
from components import OtherComponent, SimpleComponent
from faults import SHARED_BACKENDS, damage, store_url
from helpers import subprocess_env

from adatastore import open_store_sync
from adatastore.keygenerators import canonical_hash

SCRIPT = cli_zygote.SCRIPT
SEED = SimpleComponent({"seed": 3})
NETWORK = SimpleComponent({"cells": 10, "model": {"tau": 20.0}}, input=SEED)


def adatastore(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    """The console script as a command, in a process of its own (`cli_zygote`)."""
    env = subprocess_env()
    env.pop("ADATASTORE_URL", None)
    if url is not None:
        env["ADATASTORE_URL"] = url
    return cli_zygote.run(list(args), env)


@pytest.fixture(params=SHARED_BACKENDS)
def filled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(backend, url) of a store holding a seed, a network fed by it, and another type."""
    backend = str(request.param)
    with store_url(backend, tmp_path) as url:
        store = open_store_sync(url)
        store.store(SEED, "noise", [0.1] * 100)
        store.store(NETWORK, "spikes", list(range(1000)))
        store.store(NETWORK, "rates", {"mean": 4.5})
        store.store(OtherComponent({"x": 1}), "spikes", b"x" * 5000)
        store.close()
        yield backend, url


@pytest.mark.slow
def test_ls_lists_filters_and_speaks_json(filled: tuple[str, str]) -> None:
    _, url = filled
    table = adatastore("ls", "--url", url)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["KEY", "TYPE", "VERSION", "ATTRIBUTE", "SIZE", "AGE"]
    assert len(lines) == 1 + 4 + 1
    assert lines[-1].startswith("4 entries")
    listed = json.loads(adatastore("ls", "--json", url=url).stdout)  # URL from the environment
    assert sorted((e["type"], e["attribute"]) for e in listed) == [
        ("components.OtherComponent", "spikes"),
        ("components.SimpleComponent", "noise"),
        ("components.SimpleComponent", "rates"),
        ("components.SimpleComponent", "spikes"),
    ]
    only = json.loads(adatastore("ls", "--url", url, "--json", "--type", "OtherComponent").stdout)
    assert [e["attribute"] for e in only] == ["spikes"]
    spikes = json.loads(adatastore("ls", "--url", url, "--json", "--attribute", "spikes").stdout)
    assert len(spikes) == 2


@pytest.mark.slow
def test_show_and_stats(filled: tuple[str, str]) -> None:
    _, url = filled
    key = canonical_hash(NETWORK)
    shown = adatastore("show", key[:10], "--url", url)
    assert shown.returncode == 0, shown.stderr
    assert f"key:        {key}" in shown.stdout
    assert "  model:\n    tau: 20.0" in shown.stdout
    assert "components.SimpleComponent" in shown.stdout  # its input, by type
    assert "rates" in shown.stdout
    assert "stored 20" in shown.stdout  # the provenance line: "stored 2026-..."
    document = json.loads(adatastore("show", key, "--url", url, "--json").stdout)
    assert document["parameters"] == {"cells": 10, "model": {"tau": 20.0}}
    assert [item["type"] for item in document["inputs"]] == ["components.SimpleComponent"]
    assert {a["attribute"] for a in document["attributes"]} == {"spikes", "rates"}
    assert all(a["provenance"]["host"] for a in document["attributes"])
    stats = json.loads(adatastore("stats", "--url", url, "--json").stdout)
    assert (stats["entries"], stats["components"]) == (4, 3)
    assert stats["types"]["components.SimpleComponent"]["entries"] == 3
    assert stats["bytes"] == sum(row["bytes"] for row in stats["types"].values())
    human = adatastore("stats", "--url", url)
    assert "entries:    4\ncomponents: 3" in human.stdout
    missing = adatastore("show", "ffffffff", "--url", url)
    assert missing.returncode == 2
    assert "no stored component has a key starting with 'ffffffff'" in missing.stderr


@pytest.mark.slow
def test_verify_finds_damage_and_repairs_it(filled: tuple[str, str], tmp_path: Path) -> None:
    backend, url = filled
    assert adatastore("verify", "--url", url).returncode == 0
    key = canonical_hash(NETWORK)
    if backend == "files":
        location = str(tmp_path / "files")
    elif backend == "sqlite":
        location = str(tmp_path / "store.db")
    elif backend == "django-sqlite":
        location = str(tmp_path / "django.db")
    elif backend == "s3":
        location = url
    else:
        location = url.removeprefix("django+")
    damage(backend, location, key, "rates", "flip")
    found = adatastore("verify", "--url", url, "--json")
    assert found.returncode == 1
    report = json.loads(found.stdout)
    assert [(d["key"], d["attribute"]) for d in report["damaged"]] == [(key, "rates")]
    repaired = adatastore("verify", "--url", url, "--repair")
    assert repaired.returncode == 1  # damage was found (and removed)
    assert "1 damaged, 1 removed" in repaired.stdout
    assert adatastore("verify", "--url", url).returncode == 0


@pytest.mark.slow
def test_prune_says_what_it_deletes(filled: tuple[str, str]) -> None:
    _, url = filled
    dry = adatastore(
        "prune", "--url", url, "--older-than", "0s", "--type", "OtherComponent", "--dry-run"
    )
    assert dry.returncode == 0, dry.stderr
    assert "would delete: 'spikes' of components.OtherComponent" in dry.stdout
    assert len(json.loads(adatastore("ls", "--url", url, "--json").stdout)) == 4
    before = json.loads(adatastore("ls", "--url", url, "--json").stdout)
    largest = max(entry["size"] for entry in before)
    pruned = adatastore("prune", "--url", url, "--max-size", f"{largest}B", "--json")
    document = json.loads(pruned.stdout)
    left = json.loads(adatastore("ls", "--url", url, "--json").stdout)
    assert sum(entry["size"] for entry in left) <= largest  # it fits now
    assert document["bytes"] + sum(e["size"] for e in left) == sum(e["size"] for e in before)
    assert len(document["deleted"]) + len(left) == 4
    assert len(left) >= 1  # it stopped once the store fitted
    newest_deleted = max(entry["stored_at"] for entry in document["deleted"])
    assert all(entry["stored_at"] >= newest_deleted for entry in left)  # oldest went first
    nothing = adatastore("prune", "--url", url)
    assert nothing.returncode == 2
    assert "say what to prune" in nothing.stderr
    assert adatastore("prune", "--url", url, "--older-than", "soon").returncode == 2


def test_explain_names_what_differs(filled: tuple[str, str]) -> None:
    _, url = filled
    seed_key = canonical_hash(SEED)
    common = ["--url", url, "--type", "components.SimpleComponent", "--version", "$Revision: 1 $"]
    hit = adatastore(
        "explain",
        "spikes",
        *common,
        "--input",
        seed_key[:8],
        "--parameters",
        '{"cells": 10, "model": {"tau": 20.0}}',
    )
    assert hit.returncode == 0, hit.stderr
    assert hit.stdout.startswith("hit: 'spikes' of components.SimpleComponent")
    miss = adatastore(
        "explain",
        "spikes",
        *common,
        "--input",
        seed_key,
        "--parameters",
        '{"cells": 10, "model": {"tau": 25.0}}',
    )
    assert miss.returncode == 1
    assert "parameters.model.tau: asked 25.0, stored 20.0" in miss.stdout
    document = json.loads(
        adatastore(
            "explain",
            "spikes",
            *common,
            "--json",
            "--input",
            seed_key,
            "--parameters",
            '{"cells": 10, "model": {"tau": 20.0}}',
            "--version",
            "2",
        ).stdout
    )
    assert document["candidates"][0]["differences"] == [
        {"path": "version", "asked": "'2'", "stored": "'$Revision: 1 $'"}
    ]
    bad = adatastore("explain", "spikes", *common, "--parameters", "{not json")
    assert bad.returncode == 2
    assert "--parameters is not JSON" in bad.stderr


@pytest.mark.slow
def test_copy_moves_a_store_between_back_ends_and_resumes(tmp_path: Path) -> None:
    with store_url("django-postgresql", tmp_path) as postgresql:
        _copy_files_sqlite_postgresql_files(tmp_path, postgresql)


def _copy_files_sqlite_postgresql_files(tmp_path: Path, postgresql: str) -> None:
    files, sqlite, back = (
        f"file://{tmp_path}/files",
        f"sqlite:///{tmp_path}/copy.db",
        f"file://{tmp_path}/back",
    )
    source = open_store_sync(files)
    source.store_many(
        [(SimpleComponent({"n": n}), f"a{n % 3}", {"n": n, "x": [n] * 10}) for n in range(1000)]
    )
    source.close()
    first = adatastore("copy", files, sqlite)
    assert first.returncode == 0, first.stderr
    assert "copied 1000 entries, 0 already there, 0 damaged" in first.stdout
    again = adatastore("copy", files, sqlite)  # resumable: what is there is skipped
    assert "copied 0 entries, 1000 already there" in again.stdout
    assert adatastore("copy", sqlite, postgresql, "--no-progress").returncode == 0
    assert adatastore("copy", postgresql, back, "--no-progress").returncode == 0
    stores = [open_store_sync(url) for url in (files, sqlite, postgresql, back)]
    try:
        listings = [
            sorted((e.key, e.attribute_name, e.full_type, e.version) for e in s.list_contents())
            for s in stores
        ]
        assert listings[0] == listings[1] == listings[2] == listings[3]
        assert len(listings[0]) == 1000
        readers = [s.async_store.backend for s in stores if s.async_store.backend.supports_blocking]
        for key, name, _, _ in listings[0]:  # the records themselves, byte for byte
            record, *copies = (bytes(backend.blocking_read(key, name)) for backend in readers)
            assert all(copy == record for copy in copies), (key, name)
        components = [SimpleComponent({"n": n}) for n in range(1000)]
        values = [
            s.retrieve_many([(c, f"a{n % 3}") for n, c in enumerate(components)]) for s in stores
        ]
        assert values[0] == values[1] == values[2] == values[3]
        assert values[0][999] == {"n": 999, "x": [999] * 10}
        assert all(s.verify().ok for s in stores)
    finally:
        for s in stores:
            s.close()


@pytest.mark.slow
def test_demo_runs_on_a_django_store(tmp_path: Path) -> None:
    result = adatastore("demo", "--url", f"django+sqlite:///{tmp_path}/demo.db")
    assert result.returncode == 0, result.stderr
    assert re.findall(r"hits=(\d) misses=(\d)", result.stdout) == [("0", "3"), ("3", "0")]


@pytest.mark.slow
def test_every_command_has_help_and_errors_are_one_line() -> None:
    for command in ("ls", "show", "stats", "verify", "prune", "copy", "explain", "demo"):
        result = adatastore(command, "--help")
        assert result.returncode == 0, command
        assert "usage: adatastore" in result.stdout
    nowhere = adatastore("ls")
    assert nowhere.returncode == 2
    assert (
        nowhere.stderr == "adatastore: error: no store given: pass --url URL or set "
        "ADATASTORE_URL\n"
    )
    unknown = adatastore("ls", "--url", "nosuch://x")
    assert unknown.returncode == 2
    assert "Traceback" not in unknown.stderr


def test_copy_moves_large_entries_and_skips_damaged_ones(tmp_path: Path) -> None:
    import numpy as np

    files, sqlite = f"file://{tmp_path}/files", f"sqlite:///{tmp_path}/copy.db"
    arrays = [np.full(3_000_000, float(n)) for n in range(3)]  # 24 MB each
    source = open_store_sync(files)
    for n, array in enumerate(arrays):
        source.store(SimpleComponent({"n": n}), "array", array)
    source.store(SimpleComponent({"n": 99}), "small", "to be damaged")
    source.close()
    damage(
        "files",
        str(tmp_path / "files"),
        canonical_hash(SimpleComponent({"n": 99})),
        "small",
        "flip",
    )
    result = adatastore("copy", files, sqlite)
    assert result.returncode == 1  # something could not be copied
    assert "copied 3 entries, 0 already there, 1 damaged" in result.stdout
    assert "skipped damaged: 'small'" in result.stderr
    with open_store_sync(sqlite) as copy:
        for n, array in enumerate(arrays):
            assert np.array_equal(copy.retrieve(SimpleComponent({"n": n}), "array"), array)
        assert copy.retrieve(SimpleComponent({"n": 99}), "small") is None


@pytest.mark.slow
def test_prune_lru_deletes_the_least_recently_read_first(filled: tuple[str, str]) -> None:
    backend, url = filled
    with open_store_sync(url, max_entries=1000) as store:  # a limit: its reads are noted
        assert store.retrieve(SEED, "noise") == [0.1] * 100  # the first stored, read now
    total = sum(e["size"] for e in json.loads(adatastore("ls", "--url", url, "--json").stdout))
    common = ["prune", "--url", url, "--max-size", f"{total - 1}B", "--dry-run", "--json"]
    by_read = json.loads(adatastore(*common, "--lru").stdout)["deleted"]
    assert len(by_read) == 1
    assert by_read[0]["attribute"] != "noise"  # read last: kept
    if backend != "s3":  # (a bucket dates entries to the second: stored in one second)
        by_store = json.loads(adatastore(*common).stdout)["deleted"]
        assert [entry["attribute"] for entry in by_store] == ["noise"]  # stored first
    refused = adatastore("prune", "--url", url, "--lru", "--older-than", "1d")
    assert refused.returncode == 2
    assert "--lru" in refused.stderr


MODEL = """
class Network:
    version = "1"

    def __init__(self, n):
        self.parameters = {"n": n}
        self.input = None

    def rate(self):
        return self.parameters["n"]  # EDIT
"""


@pytest.mark.slow
def test_ls_and_stats_stale_name_entries_made_by_other_code(tmp_path: Path) -> None:
    package = tmp_path / "project"
    package.mkdir()
    (package / "model_cli.py").write_text(MODEL)
    url = f"sqlite:///{tmp_path}/cache.db"
    env = {**subprocess_env()}
    env["PYTHONPATH"] = f"{package}:{env['PYTHONPATH']}"
    code = (
        "import sys, model_cli\n"
        "from adatastore import open_store_sync\n"
        "with open_store_sync(sys.argv[1]) as s:\n"
        "    for n in (1, 2):\n"
        "        s.store(model_cli.Network(n), 'rate', n)\n"
        "    s.store(model_cli.Network(3), 'other', 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, url], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args], env=env, capture_output=True, text=True, check=False
        )

    fresh = run("ls", "--url", url, "--stale")
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.splitlines()[-1].startswith("0 entries")
    (package / "model_cli.py").write_text(MODEL.replace("]  # EDIT", "] + 1  # EDIT"))
    stale = run("ls", "--url", url, "--stale")
    assert stale.returncode == 0, stale.stderr
    assert "3 entries" in stale.stdout
    assert stale.stdout.count("code changed since stored") == 3
    listed = json.loads(run("ls", "--url", url, "--stale", "--json").stdout)
    assert {entry["attribute"] for entry in listed} == {"rate", "other"}
    assert all("code changed" in entry["stale"] for entry in listed)
    counted = json.loads(run("stats", "--url", url, "--stale", "--json").stdout)
    assert counted["stale"] == 3
    assert counted["types"]["model_cli.Network"]["stale"] == 3
    assert "stale:      3" in run("stats", "--url", url, "--stale").stdout
    assert "IMPORTS the modules" in " ".join(run("ls", "--help").stdout.split())
