"""What a newcomer tripped on (issue 14), through the real console script: inspection
commands never create a store, copies keep their age, explain matches types like ls,
progress bars stay cheap, and the words say what they mean."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from components import OtherComponent, SimpleComponent
from test_cli import adatastore

import adatastore as ads
from adatastore import open_store_sync


def _nothing_under(path: Path) -> bool:
    return not path.exists() or not any(path.rglob("*"))


@pytest.mark.parametrize(
    "url_of",
    [
        lambda d: str(d / "typo" / "cache.db"),
        lambda d: f"sqlite:///{d}/typo/cache.db",
        lambda d: f"file://{d}/typo/files",
        lambda d: f"django+sqlite:///{d}/typo/django.db",
    ],
    ids=["path", "sqlite", "files", "django-sqlite"],
)
@pytest.mark.parametrize(
    "command", [["ls"], ["stats"], ["verify"], ["show", "abcd"], ["prune", "--older-than", "1d"]]
)
def test_inspection_commands_never_create_a_store(
    tmp_path: Path, url_of: object, command: list[str]
) -> None:
    url = url_of(tmp_path)  # type: ignore[operator]
    result = adatastore(*command, "--url", url)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("adatastore: error: no store at"), result.stderr
    assert "Traceback" not in result.stderr
    assert _nothing_under(tmp_path / "typo")
    assert not (tmp_path / "typo").exists()


def test_explain_and_copy_need_an_existing_source(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path}/missing.db"
    explained = adatastore("explain", "x", "--type", "T", "--url", missing)
    assert explained.returncode == 2
    copied = adatastore("copy", missing, f"sqlite:///{tmp_path}/destination.db")
    assert copied.returncode == 2
    assert not (tmp_path / "missing.db").exists()


def test_a_directory_given_as_a_plain_path_suggests_a_files_url(tmp_path: Path) -> None:
    result = adatastore("ls", "--url", str(tmp_path))
    assert result.returncode == 2
    assert f"file://{tmp_path}" in result.stderr


def test_open_store_with_create_false(tmp_path: Path) -> None:
    with pytest.raises(ads.ConfigurationError, match="no store at"):
        open_store_sync(f"sqlite:///{tmp_path}/x.db", create=False)
    with pytest.raises(ads.ConfigurationError, match="no store at"):
        open_store_sync(f"file://{tmp_path}/files?create=false")
    assert list(tmp_path.iterdir()) == []
    open_store_sync(f"sqlite:///{tmp_path}/x.db").close()
    open_store_sync(f"sqlite:///{tmp_path}/x.db", create=False).close()  # exists now


@pytest.mark.slow
def test_the_demo_says_its_temporary_store_is_gone() -> None:
    result = adatastore("demo")
    assert result.returncode == 0, result.stderr
    assert "temporary directory, now removed" in result.stdout
    assert "--dir" in result.stdout


@pytest.mark.slow
def test_a_second_demo_in_one_directory_says_both_runs_were_hits(tmp_path: Path) -> None:
    assert adatastore("demo", "--dir", str(tmp_path)).returncode == 0
    second = adatastore("demo", "--dir", str(tmp_path))
    assert second.returncode == 0, second.stderr
    assert "both runs were served from the store" in second.stdout
    assert "faster" not in second.stdout


# -- one "stored at" per entry ------------------------------------------------------------------


@pytest.mark.parametrize("destination", ["sqlite", "files", "django-sqlite"])
def test_a_copy_keeps_when_each_entry_was_stored(tmp_path: Path, destination: str) -> None:
    source = f"file://{tmp_path}/source"
    with open_store_sync(source) as store:
        store.store(SimpleComponent({"n": 1}), "v", 1)
    before = json.loads(adatastore("ls", "--json", "--url", source).stdout)
    target = {
        "sqlite": f"sqlite:///{tmp_path}/copy.db",
        "files": f"file://{tmp_path}/copy",
        "django-sqlite": f"django+sqlite:///{tmp_path}/copy-django.db",
    }[destination]
    copied = adatastore("copy", source, target)
    assert copied.returncode == 0, copied.stderr
    after = json.loads(adatastore("ls", "--json", "--url", target).stdout)
    assert [e["stored_at"] for e in after] == [e["stored_at"] for e in before]
    stats = adatastore("stats", "--json", "--url", target)
    assert json.loads(stats.stdout)["oldest"] == before[0]["stored_at"]


def test_files_take_the_stored_time_from_the_record_not_the_mtime(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store"
    with open_store_sync(url) as store:
        store.store(SimpleComponent({"n": 1}), "v", 1)
        (entry,) = store.list_contents()
    record = next((tmp_path / "store").rglob("*.rec"))
    os.utime(record, (time.time() + 86400, time.time() + 86400))  # `cp` without -p, say
    with open_store_sync(url) as store:
        (again,) = store.list_contents()
    assert again.stored_at == entry.stored_at


# -- explain matches types like ls --------------------------------------------------------------


def test_explain_type_and_version_like_ls(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    with open_store_sync(url) as store:
        store.store(SimpleComponent({"n": 1}, version="2.0"), "v", 1)
        store.store(SimpleComponent({"n": 1}, version="2.1"), "v", 1)
        store.store(OtherComponent({"n": 1}), "v", 1)
    hit = adatastore(
        "explain", "v", "--type", "SimpleComponent", "--parameters", '{"n": 1}', "--url", url
    )
    assert hit.returncode == 0, hit.stdout + hit.stderr  # a hit at one of the versions
    assert "stored at versions 2.0, 2.1" in hit.stdout
    assert "components.SimpleComponent" in hit.stdout
    moved = type("SimpleComponent", (SimpleComponent,), {"__module__": "elsewhere"})
    with open_store_sync(url) as store:
        store.store(moved({"n": 2}), "v", 1)
    ambiguous = adatastore("explain", "v", "--type", "SimpleComponent", "--url", url)
    assert ambiguous.returncode == 2
    assert "elsewhere.SimpleComponent" in ambiguous.stderr
    assert "components.SimpleComponent" in ambiguous.stderr


# -- words ----------------------------------------------------------------------------------------


def test_counts_read_right(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    with open_store_sync(url) as store:
        store.store(SimpleComponent({"n": 1}), "v", 1)
    assert adatastore("ls", "--url", url).stdout.splitlines()[-1].startswith("1 entry,")
    stats = adatastore("stats", "--url", url).stdout
    assert "entries:    1\n" in stats
    assert "components: 1\n" in stats
    assert "of 1 components" not in stats
    assert "1 entry checked" in adatastore("verify", "--url", url).stdout


def test_prune_type_with_max_size_limits_that_type(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    with open_store_sync(url) as store:
        for n in range(3):
            store.store(SimpleComponent({"n": n}), "v", b"s" * 10_000)
        store.store(OtherComponent({"n": 0}), "v", b"o" * 50_000)
    result = adatastore(
        "prune", "--type", "SimpleComponent", "--max-size", "25KB", "--dry-run", "--url", url
    )
    assert result.returncode == 0, result.stderr
    assert "would delete 1 entry" in result.stdout  # 30 KB of that type -> 20 KB
    assert "OtherComponent" not in result.stdout


# -- progress -------------------------------------------------------------------------------------


def test_a_warm_progress_bar_draws_at_most_ten_times_a_second(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("tqdm")
    components = [SimpleComponent({"n": n}) for n in range(3000)]
    with ads.MemoryDataStore() as store:
        started = time.monotonic()
        report = store.warm(components, "v", lambda c: 1, progress=True, threads=4)
        seconds = time.monotonic() - started
    assert report.computed == 3000
    shown = capsys.readouterr().err
    assert shown.count("\r") <= 10 * seconds + 5, (shown.count("\r"), seconds)
    assert "computed=3000" in shown  # the last state, with labels that say what they count
    assert "already stored=0" in shown
