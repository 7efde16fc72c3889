"""Large values: float64 numpy arrays (10 MB and 100 MB), store and retrieve throughput
(GB/s) and peak extra memory (as a multiple of the array's size) per back-end and peer.

Peers: raw ``os.write`` / ``readinto`` of the array's bytes (the physical limit),
``np.save`` / ``np.load``, ``joblib.Memory`` (a cached function returning the array: the
first call stores, the second loads), diskcache and an SQLite BLOB. Peak memory is measured
in a separate pass under tracemalloc (numpy reports its buffers to it), so it does not slow
the timed rounds.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diskcache
import joblib
import numpy as np
from harness import Component, Table

from adatastore import ShelveDataStore, SQLiteDataStore


def run(rounds: int, sizes_mb: list[int]) -> list[Table]:
    tables = []
    with tempfile.TemporaryDirectory(prefix="adatastore-bench-") as name:
        for size in sizes_mb:
            tables += _one_size(Path(name) / f"{size}mb", rounds, size)
    return tables


def _one_size(root: Path, rounds: int, size_mb: int) -> list[Table]:
    root.mkdir()
    array = np.random.default_rng(size_mb).standard_normal(size_mb * 1_000_000 // 8)
    gigabytes = array.nbytes / 1e9
    operations = _operations(root, array)
    speed = {
        kind: Table(
            f"{size_mb} MB float64 array: {kind}",
            "GB/s",
            baseline="raw file (os.write / readinto)",
            higher_is_better=True,
        )
        for kind in ("store", "retrieve")
    }
    memory = Table(
        f"{size_mb} MB float64 array: peak extra memory",
        "x array size",
        note="Peak traced allocations during the call, over the array's size (tracemalloc).",
    )
    try:
        for _ in range(rounds):
            for variant, (store, retrieve) in operations.items():
                speed["store"].add(variant, gigabytes / _seconds(store))
                result = _timed_result(retrieve)
                speed["retrieve"].add(variant, gigabytes / result[0])
                if not np.array_equal(result[1], array):
                    raise AssertionError(f"{variant} gave back another array")
                del result
        for variant, (store, retrieve) in operations.items():
            memory.add(f"{variant}: store", _peak(store) / array.nbytes)
            memory.add(f"{variant}: retrieve", _peak(retrieve) / array.nbytes)
    finally:
        for closer in _closers:
            closer()
        _closers.clear()
    return [speed["store"], speed["retrieve"], memory]


_closers: list[Callable[[], object]] = []


def _operations(
    root: Path, array: np.ndarray[Any, Any]
) -> dict[str, tuple[Callable[[], object], Callable[[], Any]]]:
    component = Component({"large": True, "n": array.size})
    files = ShelveDataStore(root / "files")
    database = SQLiteDataStore(root / "store.db")
    _closers.extend([files.close, database.close])
    raw_path = root / "raw.bin"

    def raw_write() -> None:
        fd = os.open(raw_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            os.write(fd, array.data.cast("B"))
        finally:
            os.close(fd)

    def raw_read() -> np.ndarray[Any, Any]:
        result = np.empty_like(array)
        with open(raw_path, "rb", buffering=0) as stream:
            stream.readinto(result.data.cast("B"))
        return result

    memory = joblib.Memory(str(root / "joblib"), verbose=0)

    def produce(n: int) -> np.ndarray[Any, Any]:
        return array

    cached = memory.cache(produce)

    def joblib_store() -> None:
        cached.clear(warn=False)
        cached(array.size)

    cache = diskcache.Cache(str(root / "diskcache"))
    _closers.append(cache.close)
    blob = sqlite3.connect(root / "blob.db", isolation_level=None)
    blob.execute("PRAGMA journal_mode=WAL")
    blob.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    _closers.append(blob.close)

    def blob_store() -> None:
        blob.execute("REPLACE INTO t VALUES (1, ?)", (array.data.cast("B"),))

    def blob_read() -> np.ndarray[Any, Any]:
        (data,) = blob.execute("SELECT v FROM t WHERE k = 1").fetchone()
        return np.frombuffer(data, dtype=array.dtype)

    npy = root / "array.npy"
    return {
        "ours: files (ShelveDataStore)": (
            lambda: files.store(component, "a", array),
            lambda: files.retrieve(component, "a"),
        ),
        "ours: SQLite (SQLiteDataStore)": (
            lambda: database.store(component, "a", array),
            lambda: database.retrieve(component, "a"),
        ),
        "raw file (os.write / readinto)": (raw_write, raw_read),
        "np.save / np.load": (lambda: np.save(npy, array), lambda: np.load(npy)),
        "joblib.Memory": (joblib_store, lambda: cached(array.size)),
        "diskcache": (lambda: cache.set("a", array), lambda: cache.get("a")),
        "SQLite BLOB": (blob_store, blob_read),
    }


def _seconds(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _timed_result(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def _peak(function: Callable[[], object]) -> int:
    """Peak traced bytes allocated during `function`, its result included."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        result = function()
        _, peak = tracemalloc.get_traced_memory()
        del result
        return peak - before
    finally:
        tracemalloc.stop()
