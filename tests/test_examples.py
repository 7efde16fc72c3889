"""The examples run, and their second run is served from the store."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import subprocess_env
from servers import fresh_database

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_pipeline(root: Path) -> list[tuple[int, int, str]]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "pipeline.py"), str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    runs = re.findall(r"hits=(\d+) misses=(\d+)\s+mean rate ([\d.]+) Hz", result.stdout)
    return [(int(h), int(m), rate) for h, m, rate in runs]


@pytest.mark.slow
def test_pipeline_second_run_is_all_hits(tmp_path: Path) -> None:
    first, second = run_pipeline(tmp_path)
    assert first[:2] == (0, 3)
    assert second[:2] == (3, 0)
    assert first[2] == second[2]
    # a new process finds everything stored by the previous one
    third, fourth = run_pipeline(tmp_path)
    assert third[:2] == fourth[:2] == (3, 0)
    assert third[2] == first[2]


def run_example(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_the_asyncio_simulation_warms_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sweep.db"
    first = run_example("async_simulation.py", url)
    assert "warm: computed=12 already_stored=0 duplicates=3 failed=0" in first
    assert re.search(r"parameters\.damping: asked 0\.15, stored 0\.[12]\b", first), first
    second = run_example("async_simulation.py", url)
    assert "warm: computed=0 already_stored=12 duplicates=3 failed=0" in second
    assert first.splitlines()[1] == second.splitlines()[1]  # the same trajectory


def test_the_legacy_script_computes_then_reads(tmp_path: Path) -> None:
    first = run_example("legacy_script.py", str(tmp_path))
    second = run_example("legacy_script.py", str(tmp_path))
    assert first.splitlines() == ["computing", "40 spikes, the last at 1.95 s"]
    assert second.splitlines() == ["from the store", "40 spikes, the last at 1.95 s"]


@pytest.mark.slow
def test_the_cluster_example_computes_each_trial_once(tmp_path: Path) -> None:
    with fresh_database("postgresql") as database:
        url = f"django+postgresql://postgres@127.0.0.1:5432/{database['NAME']}"
        output = run_example("cluster_postgresql.py", url, str(tmp_path / "data"))
    assert "computed in all: 24 of 24 trials" in output, output
    reports = re.findall(r"computed=(\d+) already_stored=(\d+) failed=(\d+)", output)
    assert len(reports) == 4
    assert all(int(c) + int(s) == 24 and f == "0" for c, s, f in reports)
    assert len(list((tmp_path / "data").rglob("*.rec"))) == 24  # large results as files
