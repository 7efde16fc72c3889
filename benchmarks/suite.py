"""The side-by-side benchmark suite: our stores against their peers, as ratios.

    python benchmarks/suite.py                 # the whole suite (about 5 minutes here)
    python benchmarks/suite.py --quick         # a smoke run (under a minute)
    python benchmarks/suite.py --only small,keys --json results.json --markdown results.md

Every workload runs ours and the peers in one process, interleaved and repeated; the
tables show medians, spreads and ratios, and the last table checks issue 20's targets
against this run. Absolute numbers move between runs on a shared 2-core machine (thread
hand-offs and page faults are bimodal); compare the ratios.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import concurrency
import django_orm
import keys
import large_values
import scaling
import small_values
from harness import Table, Target, targets_markdown

from adatastore._storage import fsio as _fsio

# Pure CPU first, the file-system-heavy scaling section (10^5 entries, then deleted) last:
# ext4's background work after it slowed whatever ran next.
SECTIONS = ("keys", "small", "django", "large", "concurrency", "scaling")

FULL: dict[str, Callable[[], list[Table]]] = {
    "small": lambda: small_values.run(rounds=3, count=2_000),
    "django": lambda: _django(rounds=3, count=1_000),
    "large": lambda: large_values.run(rounds=5, sizes_mb=[10, 100]),
    "keys": lambda: keys.run(rounds=5, leaf_counts=[10, 1_000, 100_000], chains=(500, 2_000)),
    "scaling": lambda: scaling.run(rounds=3, sizes=[1_000, 10_000, 100_000], calls=500),
    "concurrency": lambda: concurrency.run(rounds=3, per_task=30, distinct=1_000),
}
QUICK: dict[str, Callable[[], list[Table]]] = {
    "small": lambda: small_values.run(rounds=1, count=200),
    "django": lambda: _django(rounds=1, count=100),
    "large": lambda: large_values.run(rounds=1, sizes_mb=[10]),
    "keys": lambda: keys.run(rounds=1, leaf_counts=[10, 1_000], chains=(200,)),
    "scaling": lambda: scaling.run(rounds=1, sizes=[100, 1_000], calls=100),
    "concurrency": lambda: concurrency.run(rounds=1, per_task=5, distinct=200, trivial=500),
}


def _django(rounds: int, count: int) -> list[Table]:
    """The Django section, left out with a note when PostgreSQL is not there."""
    absent = django_orm.available()
    if absent is not None:
        print(f"(django: left out: {absent})", flush=True)
        return []
    return django_orm.run(rounds, count)


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    filesystem = _fsio.filesystem_type(tempfile.gettempdir(), _fsio.MOUNTS_FILE) or "unknown"
    return (
        f"{os.cpu_count()} cores, {memory:.0f} GiB, {platform.machine()}, "
        f"Linux {platform.release()}, Python {platform.python_version()}, "
        f"temporary files on {filesystem}"
    )


def find(tables: list[Table], title_start: str) -> Table | None:
    matches = [table for table in tables if table.title.startswith(title_start)]
    return matches[-1] if matches else None


def targets(tables: list[Table]) -> list[Target]:
    """Issue 20's targets (and issue 7's that still stand), from whichever tables this
    run has."""
    found: list[Target] = []
    found += _small_targets(tables)
    found += _large_targets(tables)
    warm = find(tables, "warm:")
    if warm is not None:
        for backend, limit in (("memory", 1.2), ("SQLite", 1.2), ("files", 1.3)):
            found.append(
                Target(
                    f"warm-up wall time, {backend} / ideal",
                    warm.median(f"ours: {backend}"),
                    limit,
                    how="each component computed once (checked)",
                )
            )
    key = find(tables, "Key for a 10-leaf")
    if key is not None:
        found.append(
            Target(
                "key of a 10-leaf ParameterSet",
                key.median("ours: canonical_hash"),
                4.0,
                unit=" µs",
                how="µs medians",
            )
        )
    key = find(tables, "Key for a 1,000-leaf")
    if key is not None:
        found.append(
            Target(
                "key of a 1,000-leaf ParameterSet / joblib.hash",
                key.median("ours: canonical_hash") / key.median("joblib.hash"),
                0.15,
                how="µs medians",
            )
        )
    for operation, peer in (
        ("retrieve hit", "raw async ORM: aget"),
        ("store", "raw async ORM: aupdate_or_create"),
    ):
        table = next(
            (t for t in tables if t.title.startswith("Django on") and t.title.endswith(operation)),
            None,
        )
        if table is not None:
            found.append(
                Target(
                    f"Django/PostgreSQL 1 KB {operation} / {peer.split(': ')[1]}",
                    table.median("ours: AsyncDjangoORMDataStore") / table.median(peer),
                    1.5,
                    how="µs medians, async",
                )
            )
    ratios = find(tables, "Retrieve latency: ratio")
    if ratios is not None:
        for backend in ("SQLite", "files"):
            rows = [variant for variant in ratios.samples if variant.startswith(backend)]
            largest, smallest = rows[-1].split(": ")[1], rows[0].split(": ")[1]
            found.append(
                Target(
                    f"retrieve latency, {backend}: {largest} / {smallest} (issue 7)",
                    ratios.median(rows[-1]),
                    1.5,
                    how="blocking retrieve µs",
                )
            )
    return found


def _small_targets(tables: list[Table]) -> list[Target]:
    found: list[Target] = []
    by_operation = {
        operation: next(
            (
                t
                for t in tables  # not Django's tables, which end the same way
                if t.title.startswith("Small values") and t.title.endswith(f"keys: {operation}")
            ),
            None,
        )
        for operation in ("store", "retrieve hit", "retrieve miss")
    }
    for operation, table in by_operation.items():
        if table is None:
            continue
        found.extend(
            Target(
                f"blocking 1 KB {operation}, {backend} / diskcache",
                table.median(f"ours blocking: {backend}") / table.median("diskcache"),
                1.5,
                how="µs medians",
            )
            for backend in ("SQLite", "files")
        )
        if operation != "retrieve miss":
            for backend in ("SQLite", "files"):
                name = "store_many" if operation == "store" else "retrieve_many"
                found.append(
                    Target(
                        f"{name} of 1 KB values, {backend}: speed / diskcache loop",
                        table.median("diskcache") / table.median(f"ours bulk: {backend}"),
                        1.0,
                        at_least=True,
                        how="µs per entry",
                    )
                )
    hit, store = by_operation["retrieve hit"], by_operation["store"]
    if hit is not None:
        found.append(
            Target(
                "async 1 KB retrieve hit, SQLite / raw aiosqlite point read",
                hit.median("ours async: SQLite") / hit.median("raw aiosqlite"),
                1.3,
                how="µs medians",
            )
        )
        found.append(
            Target(
                "async 1 KB retrieve hit, files / aiofiles read",
                hit.median("ours async: files") / hit.median("aiofiles (reads of the raw files)"),
                1.0,
                how="µs medians",
            )
        )
    if store is not None:
        found.append(
            Target(
                "async 1 KB store, SQLite / raw aiosqlite insert",
                store.median("ours async: SQLite") / store.median("raw aiosqlite"),
                1.5,
                how="µs medians",
            )
        )
    return found


def _large_targets(tables: list[Table]) -> list[Target]:
    found: list[Target] = []
    for table in tables:
        if " float64 array: " not in table.title or table.title.endswith("memory"):
            continue
        size, operation = table.title.split(" float64")[0], table.title.split(": ")[-1]
        for ours in ("ours: files (ShelveDataStore)", "ours: SQLite (SQLiteDataStore)"):
            backend = ours.split(": ")[1].split(" ")[0]
            peer = "np.save" if operation == "store" else "np.load"
            found.append(
                Target(
                    f"{size} {operation}, {backend}: throughput / {peer}",
                    table.median(ours) / table.median("np.save / np.load"),
                    0.9 if operation == "store" else 1.0,
                    at_least=True,
                    how="GB/s medians",
                )
            )
    memory = next((t for t in reversed(tables) if t.title.endswith("peak extra memory")), None)
    if memory is not None:
        size = memory.title.split(" float64")[0]
        found += [
            Target(
                f"{size} {operation}, {ours.split(': ')[1].split(' ')[0]}: peak extra memory"
                " (issue 7)",
                memory.median(f"{ours}: {operation}"),
                1.5,
                how="tracemalloc peak / array size",
            )
            for ours in ("ours: files (ShelveDataStore)", "ours: SQLite (SQLiteDataStore)")
            for operation in ("store", "retrieve")
        ]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small and few")
    parser.add_argument("--only", help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--markdown", type=Path, help="also write the markdown here")
    args = parser.parse_args(argv)
    chosen = SECTIONS if not args.only else tuple(args.only.split(","))
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"## adatastore benchmark suite{' (quick)' if args.quick else ''}\n\n"
        f"Run on {when}: {machine()}.\n"
    )
    print(header, flush=True)
    tables: list[Table] = []
    parts = [header]
    for section in chosen:
        section_start = time.perf_counter()
        new = plan[section]()
        tables += new
        text = "\n".join(table.markdown() for table in new)
        text += f"\n({section}: {time.perf_counter() - section_start:.0f} s)\n"
        parts.append(text)
        print(text, flush=True)
    checked = targets(tables)
    summary = targets_markdown(checked)
    summary += f"\nWhole run: {time.perf_counter() - started:.0f} s.\n"
    parts.insert(1, summary)
    print(summary)
    if args.markdown:
        args.markdown.write_text("\n".join(parts))
    if args.json:
        document: dict[str, Any] = {
            "when": when,
            "machine": machine(),
            "quick": args.quick,
            "tables": [table.to_json() for table in tables],
            "targets": [target.to_json() for target in checked],
        }
        args.json.write_text(json.dumps(document, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
