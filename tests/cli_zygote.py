"""The ``adatastore`` console script run as a command, without an interpreter start per run.

`run` hands a command line to a zygote: one process per test process that has imported
Python, adatastore and the back-ends' libraries once, and forks a child per command. The
child is the command: it runs the installed console script as ``__main__`` with the
command's arguments and environment, its stdout and stderr in files of their own and
stdin on /dev/null, runs the exit handlers and exits with the script's status. What a
fresh interpreter would do differently is its start-up only (0.3 s of each command here:
~120 commands of tests/test_cli.py); `tests/test_cli.py`'s stale-code test still starts
the script itself, with an import path of its own.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(sys.executable).with_name("adatastore")


def _serve(script: str) -> None:
    """The zygote: one JSON request a line on stdin, one JSON reply a line."""
    import runpy
    import tempfile
    import traceback

    import adatastore.cli  # noqa: F401  (what every command imports, imported once)

    for module in ("adatastore.backends.django.store", "botocore.session"):
        with contextlib.suppress(ImportError):
            __import__(module)
    replies = os.fdopen(os.dup(1), "w")
    for line in sys.stdin:
        request = json.loads(line)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            pid = os.fork()
            if pid == 0:  # the command
                status = 1
                try:
                    null = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(null, 0)
                    os.dup2(out.fileno(), 1)
                    os.dup2(err.fileno(), 2)
                    sys.stdin = open(0, closefd=False)  # noqa: SIM115
                    os.environ.clear()
                    os.environ.update(request["env"])
                    sys.argv = [script, *request["args"]]
                    try:
                        runpy.run_path(script, run_name="__main__")
                        status = 0
                    except SystemExit as stop:  # as the interpreter turns it into a status
                        if stop.code is None or isinstance(stop.code, int):
                            status = stop.code or 0
                        else:
                            print(stop.code, file=sys.stderr)
                    atexit._run_exitfuncs()
                except BaseException:
                    traceback.print_exc()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(status)
            _, wait_status = os.waitpid(pid, 0)
            out.seek(0)
            err.seek(0)
            reply = {
                "returncode": os.waitstatus_to_exitcode(wait_status),
                "stdout": out.read().decode(),
                "stderr": err.read().decode(),
            }
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


class _Zygote:
    def __init__(self) -> None:
        from helpers import subprocess_env

        self.process = subprocess.Popen(
            [sys.executable, __file__, str(SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=subprocess_env(),
        )
        self.buffer = b""
        atexit.register(self.stop)

    def run(self, args: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write((json.dumps({"args": args, "env": env}) + "\n").encode())
        self.process.stdin.flush()
        fd = self.process.stdout.fileno()
        while b"\n" not in self.buffer:
            readable, _, _ = select.select([fd], [], [], timeout)
            assert readable, f"adatastore {' '.join(args)} took more than {timeout} s"
            chunk = os.read(fd, 1 << 16)
            assert chunk, "the CLI zygote died"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


_zygotes: dict[int, _Zygote] = {}


def run(
    args: list[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``adatastore *args`` with `env` as its whole environment, as `subprocess.run` with
    ``capture_output=True, text=True`` would give it."""
    zygote = _zygotes.get(os.getpid())
    if zygote is None or zygote.process.poll() is not None:
        zygote = _zygotes[os.getpid()] = _Zygote()
    reply = zygote.run(args, env, timeout)
    return subprocess.CompletedProcess(
        [str(SCRIPT), *args], reply["returncode"], reply["stdout"], reply["stderr"]
    )


if __name__ == "__main__":
    _serve(sys.argv[1])
