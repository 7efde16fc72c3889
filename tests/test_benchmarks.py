"""The benchmark scripts run (in --quick mode) so they cannot rot. No timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


@pytest.mark.parametrize(
    "script", ["foundation.py", "sqlite_store.py", "durability.py", "warm.py", "scaling.py"]
)
def test_benchmark_runs_quickly(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "|---|" in result.stdout  # printed its markdown table
