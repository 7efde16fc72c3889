"""A 1 GiB array retrieved with ``mmap=True``, measured from the outside: memory the
process does not allocate, and pages two processes share (real processes, real files).

Each case writes the array in one subprocess and reads it in others, so the test
process never holds 1 GiB itself; the readers report their own /proc/self/smaps_rollup.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import run_python, subprocess_env

SIZE = 1 << 30
ITEMS = SIZE // 8
SLACK = 64 << 20
"""Memory a reader may grow by besides the map (interpreter, numpy, the store)."""

STORES = {
    "files": "ShelveDataStore(sys.argv[1])",
    "sqlite": "SQLiteDataStore(sys.argv[1] + '/store.db')",
    "django-sqlite": (
        "DjangoORMDataStore({'ENGINE': 'sqlite3', 'NAME': sys.argv[1] + '/django.db'}, "
        "sys.argv[1] + '/records')"
    ),
}

PRELUDE = """
import json, sys
import numpy as np
from adatastore import DjangoORMDataStore, ShelveDataStore, SQLiteDataStore
from components import PlainComponent

def memory():
    fields = {}
    with open("/proc/self/smaps_rollup") as rollup:
        for line in rollup:
            name, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                fields[name] = int(rest.split()[0]) * 1024
    return fields

store = STORE
component = PlainComponent({"n": 1})
"""

WRITE = """
store.store(component, "v", np.arange(ITEMS, dtype=np.float64))
store.close()
"""

READ = """
import mmap
before = memory()
array = store.retrieve(component, "v", mmap=True)
mapped = memory()
base = array
while base is not None and not isinstance(base, mmap.mmap):
    base = base.obj if isinstance(base, memoryview) else base.base
shares = base is not None and bool(np.shares_memory(array, np.frombuffer(base, np.uint8)))
total = float(array.sum())
scanned = memory()
print(json.dumps({
    "writeable": bool(array.flags.writeable), "shares": shares, "total": total,
    "first": float(array[0]), "last": float(array[-1]),
    "rss_mapped": mapped["Rss"] - before["Rss"],
    "rss_scanned": scanned["Rss"] - before["Rss"],
    "anonymous_scanned": scanned["Anonymous"] - before["Anonymous"],
    "pss_scanned": scanned["Pss"] - before["Pss"],
}), flush=True)
if len(sys.argv) > 2:  # hold the map until told
    sys.stdin.readline()
"""


def script(body: str, backend: str) -> str:
    prelude = PRELUDE.replace("STORE", STORES[backend])
    return textwrap.dedent(prelude) + textwrap.dedent(body).replace("ITEMS", str(ITEMS))


@pytest.fixture(params=sorted(STORES))
def stored(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """A 1 GiB float64 array stored by another process on one back-end."""
    free = shutil.disk_usage(tmp_path).free
    if free < 3 * SIZE:
        pytest.skip(f"{free / 2**30:.1f} GiB free in {tmp_path}: the 1 GiB case needs 3")
    backend: str = request.param
    written = run_python(script(WRITE, backend), str(tmp_path), timeout=300)
    assert written.returncode == 0, written.stderr
    return backend, tmp_path


def read(report: str) -> dict[str, Any]:
    return json.loads(report)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_a_mapped_gigabyte_costs_no_memory_and_is_shared_between_processes(
    stored: tuple[str, Path],
) -> None:
    backend, path = stored
    with subprocess.Popen(
        [sys.executable, "-c", script(READ, backend), str(path), "hold"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdin is not None
            first = read(holder.stdout.readline() or holder.communicate()[1])
            # a second process maps the same entry while the first still holds its map
            second_run = run_python(script(READ, backend), str(path), timeout=300)
            assert second_run.returncode == 0, second_run.stderr
            second = read(second_run.stdout)
            holder.stdin.write("done\n")
            holder.stdin.flush()
            assert holder.wait(timeout=60) == 0
        finally:
            if holder.poll() is None:
                holder.kill()
    for report in (first, second):
        assert report["shares"], report  # the array is the record file's map
        assert report["writeable"] is False
        assert report["first"] == 0.0
        assert report["last"] == ITEMS - 1
        assert report["total"] == ITEMS * (ITEMS - 1) / 2
        assert report["rss_mapped"] < SLACK, report  # retrieving touched almost nothing
        assert report["anonymous_scanned"] < SLACK, report  # a full scan: file pages only
        assert report["rss_scanned"] > SIZE * 0.9, report  # ...which it did touch
    # the second reader's pages were the first's: its proportional share is about half
    assert second["pss_scanned"] < 0.7 * second["rss_scanned"], second
