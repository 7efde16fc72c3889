"""The s3:// back-end against its own client doing the same requests by hand.

One moto server in a process of its own on 127.0.0.1; the store (`ObjectDataStore`, the
blocking API, which calls botocore in the caller's thread) and raw botocore calls on the
same server, interleaved, several rounds, medians:

- a 100 MB numpy array: ``store`` against one raw PUT of the same bytes, ``retrieve``
  against one raw GET; the store as configured by default (one request each way up to
  128 MiB) and with ``part_size=16 MiB`` (7 parts, sent and read several at a time);
- 1,000 small values: ``retrieve_many`` against raw GETs of the same objects at the same
  concurrency (32 threads);
- one small ``retrieve`` (a hit) against one raw GET.

"speed" is raw time / store time: 1.0 is as fast as the raw client, above is faster.
moto is a Python server, slow beside a real one: its costs are in both columns.

python benchmarks/objects.py [--quick]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import time
from collections.abc import Callable
from typing import Any

from s3_clients import BUCKET, CREDENTIALS, REGION, start_server


def timed(function: Callable[[], Any]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick

    import botocore.config
    import botocore.session
    import numpy as np

    from adatastore import ObjectDataStore
    from adatastore.backends.objects import ObjectBackend

    size = (80 if quick else 100) * 2**20
    small_count = 100 if quick else 1000
    rounds = 1 if quick else 5
    process, endpoint = start_server()
    try:
        credentials = {
            "access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        }
        raw = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=credentials["access_key_id"],
            aws_secret_access_key=credentials["secret_access_key"],
            config=botocore.config.Config(max_pool_connections=64),
        )
        raw.create_bucket(Bucket=BUCKET)
        store = ObjectDataStore(BUCKET, "bench", endpoint=endpoint, region=REGION, **credentials)
        parted = ObjectDataStore(
            BUCKET, "parted", endpoint=endpoint, region=REGION, part_size=16 << 20, **credentials
        )
        backend: ObjectBackend = store.async_store.backend
        array = np.random.default_rng(0).standard_normal(size // 8)
        data = array.tobytes()
        big = _Component({"big": 1})
        smalls = [_Component({"n": n}) for n in range(small_count)]
        store.store_many([(c, "v", {"n": i, "x": [i] * 20}) for i, c in enumerate(smalls)])
        keys = [backend.record_name(store.key_of(c), "v") for c in smalls]
        pool = concurrent.futures.ThreadPoolExecutor(32)

        def raw_get(key: str) -> bytes:
            return bytes(raw.get_object(Bucket=BUCKET, Key=key)["Body"].read())

        results: dict[str, list[tuple[float, float]]] = {}
        for _ in range(rounds):
            for label, target in (("default: one request", store), ("16 MiB parts", parted)):
                results.setdefault(f"store {size >> 20} MB array, {label}", []).append(
                    (
                        timed(lambda: raw.put_object(Bucket=BUCKET, Key="raw/big", Body=data)),
                        timed(lambda t=target: t.store(big, "array", array)),  # type: ignore[misc]
                    )
                )
                results.setdefault(f"retrieve {size >> 20} MB array, {label}", []).append(
                    (
                        timed(lambda: raw_get("raw/big")),
                        timed(lambda t=target: t.retrieve(big, "array")),  # type: ignore[misc]
                    )
                )
            results.setdefault(f"retrieve_many {small_count} small values", []).append(
                (
                    timed(lambda: list(pool.map(raw_get, keys))),
                    timed(lambda: store.retrieve_many([(c, "v") for c in smalls])),
                )
            )
            results.setdefault("retrieve one small value (a hit)", []).append(
                (
                    timed(lambda: [raw_get(key) for key in keys[:100]]) / 100,
                    timed(lambda: [store.retrieve(c, "v") for c in smalls[:100]]) / 100,
                )
            )
        pool.shutdown()
        store.close()
        parted.close()
    finally:
        process.terminate()
        process.wait()
    print(f"# s3:// against raw botocore on moto, 127.0.0.1 ({rounds} rounds, medians)\n")
    print("| operation | raw client | store | speed (raw / store) |")
    print("|---|---:|---:|---:|")
    for name, samples in results.items():
        raw_time = statistics.median(s[0] for s in samples)
        ours = statistics.median(s[1] for s in samples)
        print(f"| {name} | {_shown(raw_time)} | {_shown(ours)} | {raw_time / ours:.2f} |")


def _shown(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


class _Component:
    """A component the store can key (parameters, no input, a version)."""

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.parameters = parameters
        self.input = None
        self.version = 1


if __name__ == "__main__":
    main()
