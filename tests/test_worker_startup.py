"""Worker processes that cannot start say why (issue 30, item 5).

``warm(processes=True)`` starts worker processes that import the user's script again (as
``__mp_main__``). A script that reads ``sys.argv`` at import failed every point with
anyio's ``BrokenWorkerProcess('Error during worker process initialization')``, the real
``IndexError`` only in ``__cause__``; a script that calls `warm` at import without an
``if __name__ == "__main__":`` guard made no progress for 60 s. These run real scripts
(files: a ``-c`` program is not imported again) in real processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import subprocess_env

ARGV_AT_IMPORT = """
import json, logging, sys
from adatastore import open_store_sync
from adatastore.errors import WorkerStartupError
from components import PlainComponent, square_of_n

logging.basicConfig(level=logging.ERROR)
url = sys.argv[1]  # at import: a worker process has no such argument
store = open_store_sync(url)
components = [PlainComponent({"n": n}) for n in range(6)]
report = store.warm(components, "v", square_of_n, processes=True)
raised = None
try:
    store.warm(components, "v", square_of_n, processes=True, stop_on_error=True)
except WorkerStartupError as error:
    raised = [str(error), type(error.__cause__).__name__]
print(json.dumps({
    "computed": report.computed,
    "failed": [[type(e).__name__, str(e), type(e.__cause__).__name__] for _, e in report.failed],
    "raised": raised,
}))
store.close()
"""

WARM_AT_IMPORT = """
import json, os
from adatastore import open_store_sync
from components import PlainComponent, square_of_n

store = open_store_sync(os.environ["SWEEP_URL"])  # no guard: workers run this too
report = store.warm(
    [PlainComponent({"n": n}) for n in range(4)], "v", square_of_n, processes=True,
    lock_timeout=300,
)
print(json.dumps({
    "computed": report.computed,
    "failed": [[type(e).__name__, str(e), type(e.__cause__).__name__] for _, e in report.failed],
}))
store.close()
"""

GUARDED = """
import json, sys
from adatastore import open_store_sync
from components import PlainComponent, square_of_n

if __name__ == "__main__":
    store = open_store_sync(sys.argv[1])
    report = store.warm([PlainComponent({"n": n}) for n in range(4)], "v", square_of_n,
                        processes=True)
    print(json.dumps({"computed": report.computed, "failed": len(report.failed)}))
    store.close()
"""


def _run(
    script: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # the timeout guards against a hang (the bug was a 60-s wait); it is not the assertion
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env or subprocess_env(),
        check=False,
    )


@pytest.mark.slow
def test_a_script_failing_at_import_in_workers_says_why_in_report_log_and_error(
    tmp_path: Path,
) -> None:
    script = tmp_path / "sweep.py"
    script.write_text(ARGV_AT_IMPORT)
    done = _run(script, f"sqlite:///{tmp_path / 'cache.db'}")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["computed"] == 0
    assert len(result["failed"]) == 6
    for kind, message, cause in result["failed"]:
        assert (kind, cause) == ("WorkerStartupError", "IndexError")
        assert "IndexError: list index out of range" in message
        assert str(script) in message
        assert 'if __name__ == "__main__":' in message
    assert "IndexError: list index out of range" in done.stderr  # the log: once per warm
    assert done.stderr.count("a worker process could not start") == 2
    message, cause = result["raised"]
    assert cause == "IndexError"
    assert "IndexError" in message


def test_a_script_that_warms_at_import_is_refused_in_its_workers(tmp_path: Path) -> None:
    script = tmp_path / "sweep.py"
    script.write_text(WARM_AT_IMPORT)
    env = {**subprocess_env(), "SWEEP_URL": f"sqlite:///{tmp_path / 'cache.db'}"}
    done = _run(script, env=env)  # lock_timeout=300: a wait for a lock would time out
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["computed"] == 0
    assert len(result["failed"]) == 4
    for kind, message, cause in result["failed"]:
        assert (kind, cause) == ("WorkerStartupError", "ConfigurationError")
        assert "warm was called while a worker process imports your script" in message


def test_a_guarded_script_warms_in_processes(tmp_path: Path) -> None:
    script = tmp_path / "sweep.py"
    script.write_text(GUARDED)
    done = _run(script, f"sqlite:///{tmp_path / 'cache.db'}")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"computed": 4, "failed": 0}
