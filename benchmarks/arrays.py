"""Large arrays: mapped reads against numpy's and joblib's, and the codecs on scientific data.

Three tables, each side by side in one run (medians of several rounds, page cache warm):

1. A 1 GiB float64 array (``--quick``: 64 MiB): time to the first element and time of a
   full scan (``a.sum()``) for ``retrieve(mmap=True)`` on files and SQLite, against
   ``np.load(mmap_mode="r")`` and ``joblib.load(mmap_mode="r")`` of the same array.
   Ratios are ours / ``np.load``: 1.0 is as fast, below is faster.
2. The codecs (zstd, lz4, blosc2 with byte shuffle) on data as simulations write it:
   spike times (sorted int64), a spike raster (uint8, mostly 0), a membrane potential
   (an Ornstein-Uhlenbeck trace around -65 mV, float64), random float64, a pandas
   DataFrame of recordings: stored size / raw size, and MB/s both ways (raw MB per
   second; chunks of a part on up to 4 threads), through adatastore's chunked format.
3. Storing and retrieving 100 MB (``--quick``: 16 MB) of the membrane potential and of the
   raster on the files back-end with each codec, against no compression.

python benchmarks/arrays.py [--quick]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CODECS = ["zstd:1", "zstd:3", "lz4", "blosc2"]


class PlainComponent:
    """A component: its parameters, no input, a version."""

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.parameters, self.input, self.version = parameters, None, 1


def first_of(load: Callable[[], Any]) -> Any:
    return load()[0]


def median_time(function: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


# -- data as simulations write it ---------------------------------------------------------------


def scientific_data(items: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    noise = rng.normal(size=items)
    kernel = np.exp(-np.arange(4000) / 100.0)  # tau = 10 ms at dt = 0.1 ms
    size = 1 << int(np.ceil(np.log2(items + kernel.size)))
    ou = np.fft.irfft(np.fft.rfft(noise, size) * np.fft.rfft(kernel, size), size)[:items]
    return {
        "spike times": np.cumsum(rng.geometric(0.02, size=items)).astype(np.int64),
        "spike raster": (rng.random(items) < 0.01).astype(np.uint8).repeat(8),
        "membrane potential": -65.0 + 0.3 * ou,
        "random float64": rng.normal(size=items),
        "DataFrame": pd.DataFrame(
            {
                "time": np.arange(items // 4) * 0.1,
                "neuron": np.tile(np.arange(100, dtype=np.int32), items // 400 + 1)[: items // 4],
                "rate": rng.gamma(2.0, 5.0, size=items // 4),
            }
        ),
    }


def codec_table(data: dict[str, Any], rounds: int) -> None:
    from adatastore._codec.compression import Compression, compress_parts, decompress_part
    from adatastore.serializers import PickleSerializer

    serializer = PickleSerializer()
    rows = []
    for kind, value in data.items():
        parts = serializer.dumps(value)
        raw = sum(memoryview(part).nbytes for part in parts)
        for setting in CODECS:
            compression = Compression.parse(setting)
            assert compression is not None
            packed: list[Any] = []

            def pack(
                compression: Compression = compression,
                packed: list[Any] = packed,
                parts: list[Any] = parts,
            ) -> None:
                packed[:] = [compress_parts(parts, compression)]

            pack_seconds = median_time(pack, rounds)
            stored, names = packed[0]

            def unpack(stored: list[Any] = stored, names: list[str] = names) -> None:
                for name, part in zip(names, stored, strict=True):
                    if name:
                        decompress_part(name, memoryview(part))

            unpack_seconds = median_time(unpack, rounds)
            size = sum(memoryview(part).nbytes for part in stored)
            rows.append(
                [
                    kind,
                    setting,
                    f"{size / raw:.3f}",
                    f"{raw / pack_seconds / 1e6:,.0f}",
                    f"{raw / unpack_seconds / 1e6:,.0f}",
                    "all" if all(names) else ("none" if not any(names) else "some"),
                ]
            )
    table(
        f"Codecs on scientific data ({raw / 2**20:.0f} MiB-ish values, chunks on 2 threads)",
        ["data", "codec", "size / raw", "compress MB/s", "decompress MB/s", "parts packed"],
        rows,
    )


# -- store and retrieve with each codec --------------------------------------------------------


def store_table(data: dict[str, Any], root: Path, rounds: int) -> None:
    import numpy as np

    from adatastore import ShelveDataStore

    rows = []
    for kind in ("membrane potential", "spike raster"):
        value = data[kind]
        megabytes = value.nbytes / 1e6
        baseline: tuple[float, float] | None = None
        for setting in [None, *CODECS]:
            name = setting or "none"
            with ShelveDataStore(
                root / f"{kind}-{name}".replace(" ", "-"), compression=setting
            ) as store:
                component = PlainComponent({"kind": kind})
                write = median_time(functools.partial(store.store, component, "v", value), rounds)
                read = median_time(functools.partial(store.retrieve, component, "v"), rounds)
                assert np.array_equal(store.retrieve(component, "v"), value)
                size = store.list_contents()[0].size
            if baseline is None:
                baseline = (write, read)
            rows.append(
                [
                    kind,
                    name,
                    f"{size / value.nbytes:.3f}",
                    f"{megabytes / write:,.0f}",
                    f"{baseline[0] / write:.2f}",
                    f"{megabytes / read:,.0f}",
                    f"{baseline[1] / read:.2f}",
                ]
            )
    table(
        f"Store and retrieve {megabytes:.0f} MB on files, by codec",
        ["data", "codec", "size / raw", "store MB/s", "x none", "retrieve MB/s", "x none"],
        rows,
    )


# -- mapped reads --------------------------------------------------------------------------------


def mapped_table(items: int, root: Path, rounds: int) -> None:
    import joblib
    import numpy as np

    from adatastore import ShelveDataStore, SQLiteDataStore, SyncDataStore

    array = np.arange(items, dtype=np.float64)
    np.save(root / "array.npy", array)
    joblib.dump(array, root / "array.joblib")
    component = PlainComponent({"n": items})
    stores: dict[str, SyncDataStore[Any]] = {
        "adatastore files": ShelveDataStore(root / "files"),
        "adatastore SQLite": SQLiteDataStore(root / "db.sqlite"),
    }
    for store in stores.values():
        store.store(component, "v", array)
    del array
    loaders: dict[str, Callable[[], Any]] = {
        "np.load(mmap_mode='r')": lambda: np.load(root / "array.npy", mmap_mode="r"),
        "joblib.load(mmap_mode='r')": lambda: joblib.load(root / "array.joblib", mmap_mode="r"),
        **{
            f"{name} retrieve(mmap=True)": functools.partial(
                store.retrieve, component, "v", mmap=True
            )
            for name, store in stores.items()
        },
    }
    first: dict[str, float] = {}
    scan: dict[str, float] = {}
    for load in loaders.values():  # warm each once (page cache, imports)
        float(load().sum())
    for _ in range(3):  # interleaved, so drift hits every loader alike
        for name, load in loaders.items():
            first.setdefault(name, float("inf"))
            first[name] = min(first[name], median_time(functools.partial(first_of, load), rounds))
            mapped = load()
            scan[name] = min(scan.get(name, float("inf")), median_time(mapped.sum, 3))
    for store in stores.values():
        store.close()
    import xxhash

    mapped_array = loaders["np.load(mmap_mode='r')"]()
    digest = median_time(lambda: xxhash.xxh3_64(memoryview(mapped_array)), 3)
    reference = "np.load(mmap_mode='r')"
    rows = [
        [
            name,
            f"{first[name] * 1e6:,.0f}",
            f"{first[name] / first[reference]:.2f}",
            f"{scan[name] * 1e3:,.1f}",
            f"{scan[name] / scan[reference]:.2f}",
        ]
        for name in loaders
    ]
    rows.append(
        [
            "(the xxh3 digest of the mapped array: what checking it on every mapped read "
            "would add)",
            f"{digest * 1e6:,.0f}",
            f"{digest / first[reference]:.0f}",
            "",
            "",
        ]
    )
    table(
        f"A {items * 8 / 2**30:.2f} GiB float64 array, mapped (page cache warm)",
        ["load", "to first element µs", "x np.load", "full scan ms", "x np.load"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as directory:
        root = Path(directory)
        mapped_table((64 << 20) // 8 if quick else (1 << 30) // 8, root, 5 if quick else 25)
        data = scientific_data((1 << 18) if quick else (4 << 20))
        codec_table(data, 1 if quick else 5)
        big = scientific_data((2 << 20) if quick else (100_000_000 // 8))
        store_table(big, root, 1 if quick else 5)


if __name__ == "__main__":
    main()
