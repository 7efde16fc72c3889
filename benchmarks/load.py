"""How far one store serves many workers: a load simulation, then what it extrapolates to.

N worker processes (1, 2, 4, 8; forked, each opening the store from its URL as a
``warm(executor=...)`` worker does) run ``get_or_compute`` of zero-cost computes against
one store, all at once (a barrier): Django on PostgreSQL (the cluster set-up) and SQLite
on this disk for comparison. Two patterns:

- ``distinct``: each worker its own points (a sweep split among workers: every call
  computes and stores);
- ``shared``: every worker the same points at once (overlapping sweeps: one computes
  each, the others wait for its lock and read).

Reported per run: operations per second (all workers), the database round trips per point
(statements, commits, and of them the lock's), CPU seconds of the database server and of
the workers per 1,000 points, and at the end the size of the index (rows and indexes) per
10^6 entries. The machine has 2 cores: the point where adding workers stops adding
throughput, and whose CPU is full then, says what saturates first.

python benchmarks/load.py [--quick] [--points N]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from adatastore import open_store_sync

POSTGRESQL = "django+postgresql://postgres@127.0.0.1:5432/{name}"


class Point:
    version = "1"
    input = None

    def __init__(self, i: int) -> None:
        self.parameters = {"i": i, "model": "load"}


def zero() -> int:
    return 0


def _count_statements(counts: Counter[str]) -> None:
    """Count, in this process, every statement Django sends and every commit."""
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper

    execute, executemany = CursorWrapper.execute, CursorWrapper.executemany
    commit = BaseDatabaseWrapper._commit

    def counted_execute(self: Any, sql: str, params: Any = None) -> Any:
        counts["lock" if "advisory" in sql else "statement"] += 1
        return execute(self, sql, params)

    def counted_executemany(self: Any, sql: str, param_list: Any) -> Any:
        counts["statement"] += 1
        return executemany(self, sql, param_list)

    def counted_commit(self: Any) -> Any:
        counts["commit"] += 1
        return commit(self)

    CursorWrapper.execute = counted_execute
    CursorWrapper.executemany = counted_executemany
    BaseDatabaseWrapper._commit = counted_commit


def _worker(url: str, points: list[int], barrier: Any, results: Any, done: Any) -> None:
    counts: Counter[str] = Counter()
    with open_store_sync(url) as store:
        if url.startswith("django"):
            _count_statements(counts)
        locks = store.async_store.backend.lock

        def counted_lock(*args: Any) -> Any:
            counts["lock taken"] += 1
            return locks(*args)

        store.async_store.backend.lock = counted_lock
        barrier.wait()
        started, cpu = time.perf_counter(), time.process_time()
        for i in points:
            store.get_or_compute(Point(i), "value", zero)
        results.put((time.perf_counter() - started, time.process_time() - cpu, dict(counts)))
        done.wait()  # connected until the server's CPU is read (an exited backend's is lost)


def _server_cpu() -> float:
    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        if process.info["name"] in ("postgres", "postgresql"):
            times = process.info["cpu_times"]
            total += times.user + times.system
    return total


def run(url: str, workers: int, points: int, shared: bool) -> dict[str, float]:
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(workers + 1), context.Queue()
    done = context.Barrier(workers + 1)
    base = secrets.randbelow(10**12) * 10  # new points every run
    shares = [
        list(range(base, base + points))
        if shared
        else list(range(base + w * points, base + (w + 1) * points))
        for w in range(workers)
    ]
    processes = [
        context.Process(target=_worker, args=(url, share, barrier, results, done))
        for share in shares
    ]
    for process in processes:
        process.start()
    barrier.wait()
    server, started = _server_cpu(), time.perf_counter()
    outcomes = [results.get(timeout=600) for _ in processes]
    wall = time.perf_counter() - started
    server = _server_cpu() - server
    done.wait()
    for process in processes:
        process.join()
    calls = workers * points
    distinct = points if shared else calls
    counts: Counter[str] = Counter()
    for _, _, worker_counts in outcomes:
        counts.update(worker_counts)
    return {
        "ops": calls / wall,
        "statements": (counts["statement"] + counts["lock"] + counts["commit"]) / calls,
        "locks": counts["lock"] / calls,
        "locks taken": counts["lock taken"] / calls,
        "server cpu": server / distinct * 1000,
        "worker cpu": sum(cpu for _, cpu, _ in outcomes) / distinct * 1000,
        "wall": wall,
    }


@contextlib.contextmanager
def postgresql_store() -> Iterator[tuple[str, str]]:
    import psycopg

    name = f"adatastore_load_{secrets.token_hex(4)}"
    admin = psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory(prefix="adatastore-load-") as root:
            url = POSTGRESQL.format(name=name) + f"?data_root_dir={root}"
            with open_store_sync(url):
                pass
            yield url, name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def postgresql_size(name: str) -> tuple[int, int, int]:
    """(entries, table bytes, index bytes) of the store's tables."""
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", user="postgres", dbname=name, autocommit=True
    ) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE 'adatastore%%'"
            )
        ]
        heap = index = 0
        for table in tables:
            connection.execute(f'VACUUM ANALYZE "{table}"')
            row = connection.execute(
                "SELECT pg_table_size(%s), pg_indexes_size(%s)", [table, table]
            ).fetchone()
            assert row is not None
            heap, index = heap + row[0], index + row[1]
        items = [t for t in tables if t.endswith("dataitem")]
        row = connection.execute(f'SELECT count(*) FROM "{items[0]}"').fetchone()
        assert row is not None
        return int(row[0]), heap, index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--points", type=int, default=0, help="points per worker")
    args = parser.parse_args()
    points = args.points or (50 if args.quick else 1000)
    counts = [1, 2] if args.quick else [1, 2, 4, 8]
    began = time.perf_counter()
    print(f"# Load simulation: get_or_compute of zero-cost computes, {points} points per worker\n")
    print(
        "| store | pattern | workers | ops/s | round trips / call | lock round trips / call "
        "| locks taken / call | server CPU ms / point | workers CPU ms / point |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    sizes = []
    with postgresql_store() as (pg_url, pg_name), tempfile.TemporaryDirectory() as root:
        sqlite_url = f"sqlite:///{Path(root) / 'load.db'}"
        for label, url in (("PostgreSQL", pg_url), ("SQLite", sqlite_url)):
            for shared in (False, True):
                for workers in counts:
                    result = run(url, workers, points, shared)
                    print(
                        f"| {label} | {'shared' if shared else 'distinct'} | {workers} | "
                        f"{result['ops']:,.0f} | "
                        + (
                            f"{result['statements']:.1f} | {result['locks']:.2f}"
                            if label == "PostgreSQL"
                            else "- | -"
                        )
                        + f" | {result['locks taken']:.2f} | {result['server cpu']:.2f} | "
                        f"{result['worker cpu']:.2f} |",
                        flush=True,
                    )
        entries, heap, index = postgresql_size(pg_name)
        sizes.append(("PostgreSQL", entries, heap, index))
        database = Path(root) / "load.db"
        with open_store_sync(sqlite_url) as store:
            sqlite_entries = len(store.list_contents())
        sqlite_bytes = sum(  # the database file (its WAL is reused, not grown)
            path.stat().st_size
            for path in Path(root).iterdir()
            if path.is_file() and not path.name.endswith(("-wal", "-shm", "-lock"))
        )
        sizes.append(("SQLite", sqlite_entries, sqlite_bytes, 0))
        assert database.exists()
    print("\n| store | entries | table bytes / 10^6 entries | index bytes / 10^6 entries |")
    print("|---|---:|---:|---:|")
    for label, entries, heap, index in sizes:
        scale = 10**6 / max(entries, 1)
        index_text = f"{index * scale / 2**20:,.0f} MiB" if index else "(in the file)"
        print(f"| {label} | {entries:,} | {heap * scale / 2**20:,.0f} MiB | {index_text} |")
    print(f"\nCores: {os.cpu_count()}. Whole run: {time.perf_counter() - began:.0f} s.")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
