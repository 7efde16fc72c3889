"""Small values (about 1 KB), N distinct keys: store, retrieve hit, retrieve miss.

Ours: the async API per back-end, the blocking API per back-end, and the bulk methods.
Peers: stdlib shelve opened per call (the original module's algorithm) and kept open,
diskcache, joblib.Memory (store = first call of a cached function, hit = a second call,
miss = `check_call_in_cache`), raw sqlite3 and raw aiosqlite doing the same SQL (pickle
in a BLOB keyed by text), raw files (one pickle file per key) and aiofiles reads.
"""

from __future__ import annotations

import os
import pickle
import shelve
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiofiles
import aiosqlite
import diskcache
import joblib
from harness import Component, Loop, Table, micros_per_call, micros_per_call_async, small_value

from adatastore import (
    AsyncShelveDataStore,
    AsyncSQLiteDataStore,
    ShelveDataStore,
    SQLiteDataStore,
)

OPERATIONS = ("store", "retrieve hit", "retrieve miss")
PER_CALL_LIMIT = 200


def run(rounds: int, count: int) -> list[Table]:
    """One table per operation, µs per operation; rounds interleave every variant."""
    tables = {
        operation: Table(
            f"Small values (~1 KB), {count:,} keys: {operation}",
            "µs per entry",
            baseline="diskcache",
            note=f"shelve opened per call: the first {PER_CALL_LIMIT} keys only ({_dbm()}).",
        )
        for operation in OPERATIONS
    }
    with tempfile.TemporaryDirectory(prefix="adatastore-bench-") as name:
        root = Path(name)
        loop = Loop()
        try:
            for round_number in range(rounds):
                variants = _variants(root / f"round{round_number}", loop, count)
                for variant, operations in variants.items():
                    for operation, measure in operations.items():
                        tables[operation].add(variant, measure())
                _close(loop)
        finally:
            loop.close()
    return list(tables.values())


_Variants = dict[str, dict[str, Callable[[], float]]]
_closers: list[Callable[[], Any]] = []


def _close(loop: Loop) -> None:
    while _closers:
        closer = _closers.pop()
        result = closer()
        if hasattr(result, "__await__"):
            loop.run(result)


def _variants(root: Path, loop: Loop, count: int) -> _Variants:
    root.mkdir()
    components = [Component({"i": i, "model": {"tau": 20.0, "cell": "iaf"}}) for i in range(count)]
    missing = [Component({"i": -i - 1, "model": {"tau": 20.0}}) for i in range(count)]
    values = [small_value(i) for i in range(count)]
    keys = [f"key{i}" for i in range(count)]
    variants: _Variants = {}

    # -- ours, async ---------------------------------------------------------------------------
    for label, make in (
        ("ours async: SQLite", lambda: AsyncSQLiteDataStore(root / "async.db")),
        ("ours async: files", lambda: AsyncShelveDataStore(root / "async-files")),
    ):
        store = make()
        loop.run(store.open())
        _closers.append(store.aclose)

        def async_ops(store: Any = store) -> dict[str, Callable[[], float]]:
            return {
                "store": lambda: loop.run(
                    micros_per_call_async(
                        lambda i: store.store(components[i], "v", values[i]), count
                    )
                ),
                "retrieve hit": lambda: loop.run(
                    micros_per_call_async(lambda i: store.retrieve(components[i], "v"), count)
                ),
                "retrieve miss": lambda: loop.run(
                    micros_per_call_async(lambda i: store.retrieve(missing[i], "v"), count)
                ),
            }

        variants[label] = async_ops()

    # -- ours, blocking and bulk ---------------------------------------------------------------
    for label, make_blocking in (
        ("ours blocking: SQLite", lambda: SQLiteDataStore(root / "blocking.db")),
        ("ours blocking: files", lambda: ShelveDataStore(root / "blocking-files")),
    ):
        blocking: Any = make_blocking()
        _closers.append(blocking.close)
        variants[label] = _blocking_operations(blocking, components, missing, values)
        variants[label.replace("blocking", "bulk")] = _bulk_operations(
            blocking, components, missing, values
        )

    # -- peers ---------------------------------------------------------------------------------
    shelf_path = str(root / "per-call.shelf")

    def shelve_store(i: int) -> None:
        with shelve.open(shelf_path) as shelf:
            shelf[keys[i]] = values[i]

    def shelve_get(key: str) -> object:
        with shelve.open(shelf_path) as shelf:
            return shelf.get(key)

    # Opening the shelf re-reads its whole index when shelve falls back to dbm.dumb (no
    # gdbm in this Python): per call it grows with the store, so it is timed on the first
    # PER_CALL_LIMIT keys only (which flatters it).
    few = min(count, PER_CALL_LIMIT)
    variants["shelve, opened per call (the original)"] = {
        "store": lambda: micros_per_call(shelve_store, few),
        "retrieve hit": lambda: micros_per_call(lambda i: shelve_get(keys[i]), few),
        "retrieve miss": lambda: micros_per_call(lambda i: shelve_get(f"no{i}"), few),
    }
    shelf = shelve.open(str(root / "open.shelf"))  # noqa: SIM115 - closed by _close
    _closers.append(shelf.close)
    variants["shelve, kept open"] = {
        "store": lambda: micros_per_call(lambda i: shelf.__setitem__(keys[i], values[i]), count),
        "retrieve hit": lambda: micros_per_call(lambda i: shelf.get(keys[i]), count),
        "retrieve miss": lambda: micros_per_call(lambda i: shelf.get(f"no{i}"), count),
    }
    cache = diskcache.Cache(str(root / "diskcache"))
    _closers.append(cache.close)
    variants["diskcache"] = {
        "store": lambda: micros_per_call(lambda i: cache.set(keys[i], values[i]), count),
        "retrieve hit": lambda: micros_per_call(lambda i: cache.get(keys[i]), count),
        "retrieve miss": lambda: micros_per_call(lambda i: cache.get(f"no{i}"), count),
    }
    memory = joblib.Memory(str(root / "joblib"), verbose=0)

    def produce(i: int) -> dict[str, Any]:
        return values[i]

    cached = memory.cache(produce)
    variants["joblib.Memory"] = {
        "store": lambda: micros_per_call(cached, count),
        "retrieve hit": lambda: micros_per_call(cached, count),
        "retrieve miss": lambda: micros_per_call(
            lambda i: cached.check_call_in_cache(count + i), count
        ),
    }
    raw = sqlite3.connect(root / "raw.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")
    raw.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)")
    _closers.append(raw.close)

    def raw_get(key: str) -> object:
        row = raw.execute("SELECT v FROM t WHERE k = ?", (key,)).fetchone()
        return None if row is None else pickle.loads(row[0])

    variants["raw sqlite3"] = {
        "store": lambda: micros_per_call(
            lambda i: raw.execute(
                "INSERT OR REPLACE INTO t VALUES (?, ?)", (keys[i], pickle.dumps(values[i]))
            ),
            count,
        ),
        "retrieve hit": lambda: micros_per_call(lambda i: raw_get(keys[i]), count),
        "retrieve miss": lambda: micros_per_call(lambda i: raw_get(f"no{i}"), count),
    }
    connection = loop.run(_aiosqlite_connect(root / "raw-async.db"))
    _closers.append(connection.close)

    async def aiosqlite_get(key: str) -> object:
        rows = list(await connection.execute_fetchall("SELECT v FROM t WHERE k = ?", (key,)))
        return None if not rows else pickle.loads(rows[0][0])

    variants["raw aiosqlite"] = {
        "store": lambda: loop.run(
            micros_per_call_async(
                lambda i: connection.execute_fetchall(
                    "INSERT OR REPLACE INTO t VALUES (?, ?)", (keys[i], pickle.dumps(values[i]))
                ),
                count,
            )
        ),
        "retrieve hit": lambda: loop.run(
            micros_per_call_async(lambda i: aiosqlite_get(keys[i]), count)
        ),
        "retrieve miss": lambda: loop.run(
            micros_per_call_async(lambda i: aiosqlite_get(f"no{i}"), count)
        ),
    }
    files = root / "raw-files"
    files.mkdir()

    def file_store(i: int) -> None:
        with open(files / keys[i], "wb") as stream:
            stream.write(pickle.dumps(values[i]))

    def file_get(key: str) -> object:
        try:
            with open(files / key, "rb") as stream:
                return pickle.loads(stream.read())
        except FileNotFoundError:
            return None

    variants["raw files"] = {
        "store": lambda: micros_per_call(file_store, count),
        "retrieve hit": lambda: micros_per_call(lambda i: file_get(keys[i]), count),
        "retrieve miss": lambda: micros_per_call(lambda i: file_get(f"no{i}"), count),
    }

    async def aiofiles_get(key: str) -> object:
        try:
            async with aiofiles.open(files / key, "rb") as stream:
                return pickle.loads(await stream.read())
        except FileNotFoundError:
            return None

    variants["aiofiles (reads of the raw files)"] = {
        "retrieve hit": lambda: loop.run(
            micros_per_call_async(lambda i: aiofiles_get(keys[i]), count)
        ),
        "retrieve miss": lambda: loop.run(
            micros_per_call_async(lambda i: aiofiles_get(f"no{i}"), count)
        ),
    }
    return variants


def _dbm() -> str:
    import dbm

    with tempfile.TemporaryDirectory() as name:
        with shelve.open(os.path.join(name, "probe")):
            pass
        kind = dbm.whichdb(os.path.join(name, "probe"))
    return f"shelve uses {kind} here"


def _blocking_operations(
    store: Any, components: list[Component], missing: list[Component], values: list[Any]
) -> dict[str, Callable[[], float]]:
    count = len(components)
    return {
        "store": lambda: micros_per_call(
            lambda i: store.store(components[i], "v", values[i]), count
        ),
        "retrieve hit": lambda: micros_per_call(
            lambda i: store.retrieve(components[i], "v"), count
        ),
        "retrieve miss": lambda: micros_per_call(lambda i: store.retrieve(missing[i], "v"), count),
    }


def _bulk_operations(
    store: Any, components: list[Component], missing: list[Component], values: list[Any]
) -> dict[str, Callable[[], float]]:
    count = len(components)
    return {
        "store": lambda: _bulk(
            lambda: store.store_many(
                [(c, "w", v) for c, v in zip(components, values, strict=True)]
            ),
            count,
        ),
        "retrieve hit": lambda: _bulk(
            lambda: store.retrieve_many([(c, "w") for c in components]), count
        ),
        "retrieve miss": lambda: _bulk(
            lambda: store.retrieve_many([(c, "w") for c in missing]), count
        ),
    }


async def _aiosqlite_connect(path: Path) -> aiosqlite.Connection:
    connection = await aiosqlite.connect(path, isolation_level=None)
    await connection.execute("PRAGMA journal_mode=WAL")
    await connection.execute("PRAGMA synchronous=NORMAL")
    await connection.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)")
    return connection


def _bulk(call: Callable[[], object], count: int) -> float:
    """µs per entry of one bulk call over `count` entries."""
    return micros_per_call(lambda _: call(), 1) / count
