"""Two checkouts side by side in instructions, not seconds: callgrind counts per operation.

    python benchmarks/instructions.py OLD_SRC NEW_SRC [--count 500] [--loops 4]
        [--only async,sqlite] [--new-options '{"max_size": "10GB"}'] [--old-options '{}']
        [--value 1kb|array]

Wall-clock ratios on this shared 2-core machine move by ±10% from run to run
(`checkouts.py`); instruction counts under ``valgrind --tool=callgrind`` repeat to the
instruction once hash randomisation (``PYTHONHASHSEED=0``) and OpenBLAS's spinning threads
(``OPENBLAS_NUM_THREADS=1``) are pinned. Each row stores `count` 1 KB values in a fresh
store (outside valgrind), then counts a process that opens it and runs the operation
`loops` * `count` times, minus one that opens it and runs nothing: what one operation
costs, start-up excluded. It takes a few minutes; it needs valgrind. ``--value array``
stores a 10 MB float64 array of smooth values instead of 1 KB of bytes (the large-value
rows; with ``'{"compression": "zstd"}'`` on both sides, the codec's), at fewer keys
(``--count 10 --loops 2`` is enough: a read is millions of instructions).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROWS = [
    ("blocking", "sqlite", "retrieve"),
    ("blocking", "sqlite", "store"),
    ("blocking", "files", "retrieve"),
    ("blocking", "files", "store"),
    ("async", "sqlite", "retrieve"),
    ("async", "sqlite", "store"),
    ("async", "files", "retrieve"),
    ("async", "files", "store"),
    ("async", "memory", "retrieve"),
    ("async", "memory", "store"),
]


def work(api: str, kind: str, op: str, path: str, count: int, loops: int) -> None:
    """Run in a worker: set up (`op` "setup"), or run the operation `loops` * `count` times."""
    sys.path.insert(0, str(HERE))
    from harness import Component

    import adatastore

    options = json.loads(os.environ.get("INSTRUCTIONS_OPTIONS", "{}"))
    components = [Component({"i": i}) for i in range(count)]
    value: Any = b"x" * 1000
    if os.environ.get("INSTRUCTIONS_VALUE") == "array":
        import numpy as np

        value = np.arange(10_000_000 // 8, dtype=np.float64) / 7.0
    if api == "blocking":
        blocking: Any = (
            adatastore.SQLiteDataStore(path, **options)
            if kind == "sqlite"
            else adatastore.ShelveDataStore(path, **options)
        )
        if op == "setup":
            for component in components:
                blocking.store(component, "x", value)
        else:
            blocking.retrieve(components[0], "x")  # opened and warm in both runs
            blocking.store(components[0], "y", value)
            for _ in range(loops):
                for component in components:
                    if op == "retrieve":
                        blocking.retrieve(component, "x")
                    else:
                        blocking.store(component, "y", value)
        blocking.close()
        return

    async def run() -> None:
        store: Any
        if kind == "sqlite":
            store = adatastore.AsyncSQLiteDataStore(path, **options)
        elif kind == "files":
            store = adatastore.AsyncShelveDataStore(path, **options)
        else:
            store = adatastore.AsyncMemoryDataStore(**options)
        async with store:
            if op == "setup" or kind == "memory":
                for component in components:
                    await store.store(component, "x", value)
            if op == "setup":
                return
            await store.retrieve(components[0], "x")
            await store.store(components[0], "y", value)
            for _ in range(loops):
                for component in components:
                    if op == "retrieve":
                        await store.retrieve(component, "x")
                    else:
                        await store.store(component, "y", value)

    asyncio.run(run())


def counted(
    src: Path,
    row: tuple[str, str, str],
    path: str,
    count: int,
    loops: int,
    options: str = "{}",
) -> int:
    """Instructions of one worker process under callgrind (`options`: JSON of the store's
    keyword arguments)."""
    env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1")
    env["INSTRUCTIONS_OPTIONS"] = options  # the value kind: INSTRUCTIONS_VALUE, set by main
    command = [sys.executable, __file__, "--worker", str(src), *row, path]
    command += ["--count", str(count), "--loops", str(loops)]
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    match = re.search(r"Collected : (\d+)", done.stderr)
    assert match is not None, done.stderr[-2000:]
    return int(match.group(1))


def per_operation(
    src: Path, row: tuple[str, str, str], count: int, loops: int, options: str = "{}"
) -> float:
    with tempfile.TemporaryDirectory(prefix="adatastore-instructions-") as name:
        path = str(Path(name) / ("store.db" if row[1] == "sqlite" else "store"))
        setup = [sys.executable, __file__, "--worker", str(src), row[0], row[1], "setup", path]
        subprocess.run(
            [*setup, "--count", str(count)],
            check=True,
            env=dict(os.environ, INSTRUCTIONS_OPTIONS=options),
        )
        idle = counted(src, row, path, count, 0, options)
        busy = counted(src, row, path, count, loops, options)
    return (busy - idle) / (loops * count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="src directory of the old checkout")
    parser.add_argument("new", type=Path, help="src directory of the new checkout")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--loops", type=int, default=4)
    parser.add_argument("--only", default="", help="rows whose words include all of these")
    parser.add_argument("--new-options", default="{}", help="JSON: the new side's options")
    parser.add_argument("--old-options", default="{}", help="JSON: the old side's options")
    parser.add_argument("--value", choices=["1kb", "array"], default="1kb")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:  # old: this worker's src; rest: api, kind, op, path
        sys.path.insert(0, str(arguments.old.resolve()))
        rest: list[str] = arguments.rest
        api, (kind, op, path) = str(arguments.new), rest
        work(api, kind, op, path, arguments.count, arguments.loops)
        return
    os.environ["INSTRUCTIONS_VALUE"] = arguments.value
    what = "1 KB values" if arguments.value == "1kb" else "10 MB arrays"
    print(f"### instructions per operation (callgrind), {what}, {arguments.count} keys")
    print()
    print("| operation | old | new | new / old |")
    print("|---|---:|---:|---:|")
    wanted = [word for word in arguments.only.split(",") if word]
    for row in [row for row in ROWS if all(word in row for word in wanted)]:
        old = per_operation(
            arguments.old.resolve(), row, arguments.count, arguments.loops, arguments.old_options
        )
        new = per_operation(
            arguments.new.resolve(), row, arguments.count, arguments.loops, arguments.new_options
        )
        label = f"{row[0]} {row[2]}: {row[1]}"
        print(f"| {label} | {old:,.0f} | {new:,.0f} | {new / old:.3f} |", flush=True)


if __name__ == "__main__":
    main()
