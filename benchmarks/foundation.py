"""Side-by-side measurements behind the foundation's design choices, as ratios.

    python benchmarks/foundation.py [--quick]

1. Key making for a 1,000-leaf ParameterSet: canonical_hash vs joblib.hash and
   sha1(pickle.dumps) (fast but not canonical).
2. Files back-end I/O strategy: one worker-thread hop per operation (what we do) vs
   aiofiles (a hop per open/read/write/close), both writing and reading 1 KB values.
3. Blocking layer: ShelveDataStore.retrieve vs awaiting AsyncShelveDataStore.retrieve,
   and a bare anyio portal round trip; the original algorithm (shelve opened per call).

Rounds are interleaved and repeated; medians are printed. Absolute microseconds move
between runs on this machine (thread hand-offs are bimodal), ratios much less.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import pickle
import secrets
import shelve
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiofiles
import aiofiles.os
import anyio.to_thread
import joblib
from anyio.from_thread import start_blocking_portal
from parameters import ParameterSet

from adatastore import ShelveDataStore, _portal
from adatastore.keygenerators import canonical_hash


class Component:
    version = "1"

    def __init__(self, parameters: Any) -> None:
        self.parameters = parameters
        self.input = None


def per_call(function: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls * 1e6


async def per_call_async(function: Callable[[], Awaitable[object]], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await function()
    return (time.perf_counter() - start) / calls * 1e6


def report(title: str, rows: dict[str, list[float]], baseline: str) -> None:
    print(f"\n## {title}\n")
    print("| what | median µs | spread | ratio to " + baseline + " |")
    print("|---|---:|---:|---:|")
    base = statistics.median(rows[baseline])
    for name, values in rows.items():
        median = statistics.median(values)
        spread = f"{min(values):.1f}-{max(values):.1f}"
        print(f"| {name} | {median:.1f} | {spread} | {median / base:.2f} |")


def bench_keys(rounds: int, calls: int) -> None:
    leaves = {
        f"group{g}": {
            f"p{i}": (i * 0.5 if i % 3 == 0 else (i if i % 3 == 1 else f"s{i}")) for i in range(100)
        }
        for g in range(10)
    }
    component = Component(ParameterSet(leaves))
    rows: dict[str, list[float]] = {"canonical_hash": [], "joblib.hash": [], "sha1(pickle)": []}
    for _ in range(rounds):
        rows["canonical_hash"].append(per_call(lambda: canonical_hash(component), calls))
        rows["joblib.hash"].append(per_call(lambda: joblib.hash(leaves), max(1, calls // 5)))
        rows["sha1(pickle)"].append(
            per_call(lambda: hashlib.sha1(pickle.dumps(component.parameters)).hexdigest(), calls)
        )
    report("Key for a 1,000-leaf ParameterSet", rows, "joblib.hash")


async def bench_file_io(rounds: int, calls: int) -> None:
    directory = tempfile.mkdtemp(prefix="adatastore-bench-")
    payload = secrets.token_bytes(1024)
    path = os.path.join(directory, "value")

    def write_one_hop() -> None:
        temp = os.path.join(directory, ".tmp-" + secrets.token_hex(8))
        with open(temp, "wb") as stream:
            stream.write(payload)
        os.replace(temp, path)

    def read_one_hop() -> bytes:
        with open(path, "rb") as stream:
            return stream.read()

    async def thread_write() -> None:
        await anyio.to_thread.run_sync(write_one_hop)

    async def thread_read() -> bytes:
        return await anyio.to_thread.run_sync(read_one_hop)

    async def aiofiles_write() -> None:
        temp = os.path.join(directory, ".tmp-" + secrets.token_hex(8))
        async with aiofiles.open(temp, "wb") as stream:
            await stream.write(payload)
        await aiofiles.os.replace(temp, path)

    async def aiofiles_read() -> bytes:
        async with aiofiles.open(path, "rb") as stream:
            data: bytes = await stream.read()
            return data

    rows: dict[str, list[float]] = {
        "one hop: write": [],
        "aiofiles: write": [],
        "one hop: read": [],
        "aiofiles: read": [],
    }
    for _ in range(rounds):
        rows["one hop: write"].append(await per_call_async(thread_write, calls))
        rows["aiofiles: write"].append(await per_call_async(aiofiles_write, calls))
        rows["one hop: read"].append(await per_call_async(thread_read, calls))
        rows["aiofiles: read"].append(await per_call_async(aiofiles_read, calls))
    report("Files: one worker-thread hop per operation vs aiofiles (1 KB)", rows, "aiofiles: read")


def bench_blocking_layer(rounds: int, calls: int) -> None:
    directory = tempfile.mkdtemp(prefix="adatastore-bench-")
    component = Component(ParameterSet({"a": 1, "b": {"c": 2.5}}))
    value = {"data": list(range(100))}
    blocking = ShelveDataStore(directory)
    blocking.store(component, "x", value)
    async_store = blocking.async_store

    async def async_loop() -> float:
        return await per_call_async(lambda: async_store.retrieve(component, "x"), calls)

    async def nothing() -> None:
        return None

    shelf_path = os.path.join(directory, "original.shelf")
    with shelve.open(shelf_path) as shelf:
        shelf["x"] = value

    def original_algorithm() -> object:
        with shelve.open(shelf_path) as shelf:  # the original module opened it per call
            return shelf["x"]

    rows: dict[str, list[float]] = {
        "async retrieve (awaited on the portal loop)": [],
        "blocking retrieve (ShelveDataStore)": [],
        "bare portal round trip": [],
        "original: shelve opened per retrieve": [],
    }
    with start_blocking_portal() as other:
        for _ in range(rounds):
            rows["async retrieve (awaited on the portal loop)"].append(_portal.call(async_loop))
            rows["blocking retrieve (ShelveDataStore)"].append(
                per_call(lambda: blocking.retrieve(component, "x"), calls)
            )
            rows["bare portal round trip"].append(per_call(lambda: other.call(nothing), calls))
            rows["original: shelve opened per retrieve"].append(per_call(original_algorithm, calls))
    report(
        "Blocking layer over the async core (files back-end, small value)",
        rows,
        "async retrieve (awaited on the portal loop)",
    )
    blocking.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds, for smoke tests")
    args = parser.parse_args()
    rounds, calls = (2, 20) if args.quick else (7, 300)
    print(f"# Foundation benchmarks ({rounds} rounds of {calls} calls; medians)")
    bench_keys(rounds, calls)
    asyncio.run(bench_file_io(rounds, calls))
    bench_blocking_layer(rounds, calls)


if __name__ == "__main__":
    main()
