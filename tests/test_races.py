"""`store` racing `delete` of the same component, in two real processes, on every back-end:
each round ends as one of the two orders (the entry present, listed and verifiable, or
absent everywhere), and neither call ever fails."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import subprocess_env
from test_batches import url_for

RACER = """
import sys
import adatastore
from components import SimpleComponent

url, role, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = adatastore.open_store_sync(url)
for line in sys.stdin:           # one line per round: both processes start together
    round_ = int(line)
    c = SimpleComponent({"raced": 1})
    for step in range(40):
        if role == "store":
            store.store(c, "v", (round_, step, b"x" * (300_000 if step % 4 == 0 else 10)))
            store.store(c, "w", step)
        else:
            store.delete(c) if step % 2 else store.delete(c, "v")
    print("done", flush=True)
store.close()
"""

CHECK = """
import sys
import adatastore
from components import SimpleComponent

for line in sys.stdin:           # one line per round, once both racers are done
    store = adatastore.open_store_sync(sys.argv[1])   # a fresh store each round: no cache
    c = SimpleComponent({"raced": 1})
    key = store.key_of(c)
    listed = {e.attribute_name for e in store.list_contents() if e.key == key}
    for name in ("v", "w"):
        value = store.retrieve(c, name)
        present = value is not None
        if present != (name in listed) or present != store.contains(c, name):
            print("disagree", name, present, sorted(listed))
    report = store.verify()
    print("verify", report.ok, report.checked == len(listed))
    print("checked", flush=True)
    store.close()
"""


@pytest.mark.parametrize(
    "backend", ["files", "sqlite", "django-sqlite", "django-postgresql", "django-mariadb", "s3"]
)
@pytest.mark.slow
def test_store_racing_delete_ends_in_one_order(backend: str, tmp_path: Path) -> None:
    with url_for(backend, tmp_path) as url:
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(code), url, *arguments],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=subprocess_env(),
            )
            for code, arguments in (
                (RACER, ("store", "10")),
                (RACER, ("delete", "10")),
                (CHECK, ()),
            )
        ]
        *pair, checker = racers  # one checking process for every round (one start, not ten)
        try:
            for round_number in range(10):
                for racer in pair:
                    assert racer.stdin is not None
                    racer.stdin.write(f"{round_number}\n")
                    racer.stdin.flush()
                for racer in pair:
                    assert racer.stdout is not None
                    line = racer.stdout.readline().strip()
                    assert line == "done", racer.communicate()[1][-3000:]
                assert checker.stdin is not None
                assert checker.stdout is not None
                checker.stdin.write(f"{round_number}\n")
                checker.stdin.flush()
                said = [checker.stdout.readline().strip(), checker.stdout.readline().strip()]
                assert said == ["verify True True", "checked"], (
                    said,
                    checker.communicate()[1][-3000:],
                )
        finally:
            for racer in racers:
                if racer.stdin is not None:
                    racer.stdin.close()
                racer.wait(timeout=60)
                if racer.stdout is not None:
                    racer.stdout.close()
                if racer.stderr is not None:
                    racer.stderr.close()
        assert [racer.returncode for racer in racers] == [0, 0, 0]
