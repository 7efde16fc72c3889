"""The SQLite back-end beside what it is built on, as ratios.

    python benchmarks/sqlite_store.py [--quick]

1. Where large records go: a 100 MiB array through AsyncSQLiteDataStore (records of
   128 KiB or more go to a file beside the database) against the same bytes as an SQLite
   BLOB (raw sqlite3) and as a plain file (raw os.write / readinto): GB/s.
2. Small values (1 KB): AsyncSQLiteDataStore store / retrieve hit against a raw aiosqlite
   point read and insert of the same row, and the blocking SQLiteDataStore.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosqlite
import numpy as np

from adatastore import AsyncSQLiteDataStore, SQLiteDataStore


class Component:
    version = "1"

    def __init__(self, parameters: dict[str, object]) -> None:
        self.parameters = parameters
        self.input = None


def seconds(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


async def seconds_async(function: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await function()
    return time.perf_counter() - start


def table(title: str, unit: str, rows: dict[str, list[float]], baseline: str) -> None:
    print(f"\n## {title}\n")
    print(f"| what | median {unit} | spread | ratio to {baseline} |")
    print("|---|---:|---:|---:|")
    base = statistics.median(rows[baseline])
    for name, values in rows.items():
        median = statistics.median(values)
        print(
            f"| {name} | {median:.2f} | {min(values):.2f}-{max(values):.2f} | {median / base:.2f} |"
        )


async def large(directory: Path, rounds: int, mib: int) -> None:
    array = np.random.default_rng(0).standard_normal(mib * 2**20 // 8)
    gigabytes = array.nbytes / 1e9
    component = Component({"large": True})
    rows: dict[str, list[float]] = {
        "adatastore SQLite: store": [],
        "adatastore SQLite: retrieve": [],
        "raw file: os.write": [],
        "raw file: readinto": [],
        "SQLite BLOB: insert": [],
        "SQLite BLOB: select": [],
    }
    raw = directory / "raw.bin"
    with contextlib.closing(sqlite3.connect(directory / "blob.db")) as blob_db:
        blob_db.execute("PRAGMA journal_mode=WAL")
        blob_db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
        async with AsyncSQLiteDataStore(directory / "store.db") as store:
            for _ in range(rounds):
                rows["adatastore SQLite: store"].append(
                    gigabytes / await seconds_async(lambda: store.store(component, "a", array))
                )
                rows["adatastore SQLite: retrieve"].append(
                    gigabytes / await seconds_async(lambda: store.retrieve(component, "a"))
                )

                def write_raw() -> None:
                    fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                    os.write(fd, array.data)
                    os.close(fd)

                def read_raw() -> None:
                    buffer = np.empty(array.nbytes, np.uint8)
                    with open(raw, "rb", buffering=0) as stream:
                        stream.readinto(buffer.data)

                rows["raw file: os.write"].append(gigabytes / seconds(write_raw))
                rows["raw file: readinto"].append(gigabytes / seconds(read_raw))

                def insert() -> None:
                    with blob_db:
                        blob_db.execute("REPLACE INTO t VALUES (1, ?)", (array.data,))

                def select() -> None:
                    blob_db.execute("SELECT v FROM t WHERE k = 1").fetchone()

                rows["SQLite BLOB: insert"].append(gigabytes / seconds(insert))
                rows["SQLite BLOB: select"].append(gigabytes / seconds(select))
    table(f"{mib} MiB float64 array (GB/s; higher is better)", "GB/s", rows, "raw file: os.write")


async def small(directory: Path, rounds: int, calls: int) -> None:
    payload = os.urandom(1024)
    component = Component({"small": True})
    rows: dict[str, list[float]] = {
        "raw aiosqlite: point read": [],
        "adatastore async: retrieve hit": [],
        "adatastore async: retrieve miss": [],
        "raw aiosqlite: insert (autocommit)": [],
        "adatastore async: store": [],
    }
    missing = Component({"small": False})
    async with (
        AsyncSQLiteDataStore(directory / "small.db") as store,
        aiosqlite.connect(directory / "raw.db", isolation_level=None) as raw,
    ):
        await raw.execute("PRAGMA journal_mode=WAL")
        await raw.execute("PRAGMA synchronous=NORMAL")
        await raw.execute("CREATE TABLE t (k TEXT, a TEXT, v BLOB, PRIMARY KEY (k, a))")
        await raw.execute("INSERT INTO t VALUES ('k', 'a', ?)", (payload,))
        await store.store(component, "a", payload)

        async def per_call(function: Callable[[], Awaitable[object]]) -> float:
            start = time.perf_counter()
            for _ in range(calls):
                await function()
            return (time.perf_counter() - start) / calls * 1e6

        for _ in range(rounds):
            rows["raw aiosqlite: point read"].append(
                await per_call(
                    lambda: raw.execute_fetchall("SELECT v FROM t WHERE k = 'k' AND a = 'a'")
                )
            )
            rows["adatastore async: retrieve hit"].append(
                await per_call(lambda: store.retrieve(component, "a"))
            )
            rows["adatastore async: retrieve miss"].append(
                await per_call(lambda: store.retrieve(missing, "a"))
            )
            rows["raw aiosqlite: insert (autocommit)"].append(
                await per_call(
                    lambda: raw.execute_fetchall(
                        "INSERT OR REPLACE INTO t VALUES ('k', 'a', ?)", (payload,)
                    )
                )
            )
            rows["adatastore async: store"].append(
                await per_call(lambda: store.store(component, "a", payload))
            )
    table("1 KB values (µs per call; lower is better)", "µs", rows, "raw aiosqlite: point read")


def blocking(directory: Path, rounds: int, calls: int) -> None:
    component = Component({"small": True})
    rows: dict[str, list[float]] = {
        "SQLiteDataStore: retrieve hit": [],
        "SQLiteDataStore: store": [],
    }
    with SQLiteDataStore(directory / "blocking.db") as store:
        store.store(component, "a", os.urandom(1024))
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(calls):
                store.retrieve(component, "a")
            rows["SQLiteDataStore: retrieve hit"].append(
                (time.perf_counter() - start) / calls * 1e6
            )
            start = time.perf_counter()
            for _ in range(calls):
                store.store(component, "a", b"x" * 1024)
            rows["SQLiteDataStore: store"].append((time.perf_counter() - start) / calls * 1e6)
    table("Blocking API, 1 KB values (µs per call)", "µs", rows, "SQLiteDataStore: retrieve hit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds, small sizes")
    args = parser.parse_args()
    rounds, calls, mib = (2, 50, 8) if args.quick else (5, 500, 100)
    print(f"# SQLite back-end ({rounds} rounds; medians)")
    with tempfile.TemporaryDirectory(prefix="adatastore-bench-") as name:
        directory = Path(name)
        asyncio.run(large(directory, rounds, mib))
        asyncio.run(small(directory, rounds, calls))
        blocking(directory, rounds, calls)


if __name__ == "__main__":
    main()
