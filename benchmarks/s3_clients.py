"""Which async S3 client for the object-store back-end: obstore against aiobotocore.

Both talk to the same local S3 server (moto's, in a process of its own on 127.0.0.1, so
the client's CPU is measured apart from the server's), side by side, interleaved:

- 1 KB objects: PUT and GET one after another, and GET at a concurrency of 32;
- a 32 MB object: PUT and GET.

Reported: wall time per operation (or MB/s) and the client process's CPU per operation.
moto is a Python server, slower than a real one: the wall times are its; the client CPU
is what the choice of client changes.

python benchmarks/s3_clients.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

BUCKET = "adatastore-bench"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return process, endpoint


def over(
    operation: Callable[[str], Awaitable[Any]], keys: list[str]
) -> Callable[[], Awaitable[Any]]:
    """A call of `operation` on the next key at each call."""
    iterator = iter(keys)
    return lambda: operation(next(iterator))


async def timed(operation: Callable[[], Awaitable[Any]], count: int) -> tuple[float, float]:
    """(wall seconds, client CPU seconds) for `count` awaited calls of `operation`."""
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        await operation()
    return time.perf_counter() - started, time.process_time() - cpu


async def main_async(quick: bool) -> None:
    import obstore
    from aiobotocore.session import get_session
    from obstore.store import S3Store

    small_count = 100 if quick else 500
    large = (4 if quick else 32) * 2**20
    rounds = 1 if quick else 3
    process, endpoint = start_server()
    results: dict[str, list[tuple[float, float]]] = {}
    try:
        session = get_session()
        async with session.create_client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        ) as boto:
            await boto.create_bucket(Bucket=BUCKET)
            store = S3Store(
                BUCKET,
                endpoint=endpoint,
                region=REGION,
                access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                client_options={"allow_http": True},
            )
            small, big = os.urandom(1024), os.urandom(large)
            keys = [f"small/{i}" for i in range(small_count)]
            await boto.put_object(Bucket=BUCKET, Key="warm", Body=b"x")
            await obstore.put_async(store, "warm", b"x")

            async def obstore_gets() -> None:
                limit = asyncio.Semaphore(32)

                async def one(key: str) -> None:
                    async with limit:
                        await (await obstore.get_async(store, key)).bytes_async()

                await asyncio.gather(*(one(key) for key in keys))

            async def boto_gets() -> None:
                limit = asyncio.Semaphore(32)

                async def one(key: str) -> None:
                    async with limit:
                        response = await boto.get_object(Bucket=BUCKET, Key=key)
                        async with response["Body"] as body:
                            await body.read()

                await asyncio.gather(*(one(key) for key in keys))

            for _ in range(rounds):
                for name, put, get, gets, put_big, get_big in (
                    (
                        "obstore",
                        lambda key: obstore.put_async(store, key, small),
                        lambda key: _obstore_read(obstore, store, key),
                        obstore_gets,
                        lambda: obstore.put_async(store, "big", big),
                        lambda: _obstore_read(obstore, store, "big"),
                    ),
                    (
                        "aiobotocore",
                        lambda key: boto.put_object(Bucket=BUCKET, Key=key, Body=small),
                        lambda key: _boto_read(boto, key),
                        boto_gets,
                        lambda: boto.put_object(Bucket=BUCKET, Key="big", Body=big),
                        lambda: _boto_read(boto, "big"),
                    ),
                ):
                    results.setdefault(f"{name}: 1 KB PUT", []).append(
                        await timed(over(put, keys), len(keys))
                    )
                    results.setdefault(f"{name}: 1 KB GET", []).append(
                        await timed(over(get, keys), len(keys))
                    )
                    wall, cpu = await timed(gets, 1)
                    results.setdefault(f"{name}: 1 KB GET x32 concurrent", []).append(
                        (wall / len(keys), cpu / len(keys))
                    )
                    results.setdefault(f"{name}: {large >> 20} MB PUT", []).append(
                        await timed(put_big, 1)
                    )
                    results.setdefault(f"{name}: {large >> 20} MB GET", []).append(
                        await timed(get_big, 1)
                    )
    finally:
        process.terminate()
        process.wait()
    print(f"# obstore vs aiobotocore against moto on 127.0.0.1 ({rounds} rounds, medians)\n")
    print("| operation | wall per op | client CPU per op |")
    print("|---|---:|---:|")
    for name, samples in results.items():
        per = 1 if "MB" in name else (1 if "concurrent" in name else small_count)
        wall = statistics.median(s[0] for s in samples) / per
        cpu = statistics.median(s[1] for s in samples) / per
        if "MB" in name:
            rate = large / 2**20 / wall
            print(f"| {name} | {wall * 1000:.0f} ms ({rate:.0f} MB/s) | {cpu * 1000:.0f} ms |")
        else:
            print(f"| {name} | {wall * 1e6:.0f} us | {cpu * 1e6:.0f} us |")


async def _obstore_read(obstore: Any, store: Any, key: str) -> bytes:
    return bytes(await (await obstore.get_async(store, key)).bytes_async())


async def _boto_read(boto: Any, key: str) -> bytes:
    response = await boto.get_object(Bucket=BUCKET, Key=key)
    async with response["Body"] as body:
        return bytes(await body.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main_async(parser.parse_args().quick))


if __name__ == "__main__":
    main()
