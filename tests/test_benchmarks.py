"""The benchmark suite runs (in --quick mode) so it cannot rot. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


@pytest.mark.slow
def test_the_suite_runs_quickly_and_reports_every_target(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "suite.py"),
            "--quick",
            "--json",
            str(tmp_path / "results.json"),
            "--markdown",
            str(tmp_path / "results.md"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["quick"] is True
    titles = [table["title"] for table in document["tables"]]
    for expected in ("Small values", "10 MB float64", "Key for a", "Retrieve latency", "warm:"):
        assert any(title.startswith(expected) for title in titles), expected
    assert all(table["medians"] for table in document["tables"])
    django = any(title.startswith("Django on PostgreSQL") for title in titles)
    if os.environ.get("ADATASTORE_REQUIRE_SERVERS") == "1":
        assert django, result.stdout[-3000:]
    names = [target["name"] for target in document["targets"]]
    assert len(names) == (30 if django else 28)  # issue 20's, per back-end and operation
    assert all(isinstance(target["met"], bool) for target in document["targets"])
    markdown = (tmp_path / "results.md").read_text()
    assert "### Targets" in markdown
    assert "|---|" in result.stdout


def test_the_durability_script_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "durability.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "|---|" in result.stdout


@pytest.mark.slow
def test_the_cluster_load_and_object_store_scripts_run(tmp_path: Path) -> None:
    """benchmarks/cluster.py (a LocalCluster), benchmarks/load.py (PostgreSQL and SQLite),
    benchmarks/objects.py (a moto server) and benchmarks/arrays.py (mapped reads, codecs),
    quick, so they cannot rot; no timing is asserted."""
    for script, expected in (
        ("cluster.py", ["LocalCluster", "Caller's memory", "Rerun of a warmed"]),
        ("load.py", ["| PostgreSQL | distinct | 2 |", "| SQLite | shared | 2 |", "10^6"]),
        ("objects.py", ["| retrieve_many 100 small values |", "16 MiB parts"]),
        ("arrays.py", ["| adatastore files retrieve(mmap=True) |", "| DataFrame | blosc2 |"]),
    ):
        result = subprocess.run(
            [sys.executable, str(BENCHMARKS / script), "--quick"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        for text in expected:
            assert text in result.stdout, (script, text)
