"""The examples run, and their second run is served from the store."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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


def test_pipeline_second_run_is_all_hits(tmp_path: Path) -> None:
    first, second = run_pipeline(tmp_path)
    assert first[:2] == (0, 3)
    assert second[:2] == (3, 0)
    assert first[2] == second[2]
    # a new process finds everything stored by the previous one
    third, fourth = run_pipeline(tmp_path)
    assert third[:2] == fourth[:2] == (3, 0)
    assert third[2] == first[2]
