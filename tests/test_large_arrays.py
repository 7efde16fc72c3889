"""Large arrays: mapped reads (``retrieve(mmap=...)``) and per-record compression, on
every back-end (the conformance back-ends of conftest.py), through both APIs."""

from __future__ import annotations

import mmap
import os
import pickle
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from components import PlainComponent

from adatastore import (
    AsyncShelveDataStore,
    AsyncSQLiteDataStore,
    ShelveDataStore,
    SQLiteDataStore,
    open_store,
)
from adatastore._compute.spec import WorkerStore
from adatastore._storage.fsio import FileMap
from adatastore.errors import ConfigurationError, CorruptEntryError, IntegrityError
from adatastore.serializers import PickleSerializer

pytestmark = pytest.mark.anyio

MAPPED = {"files", "sqlite", "django-sqlite", "django-postgresql", "django-mariadb"}
"""Back-ends that keep records in files of their own (Django given a data_root_dir)."""
CODECS = ["zstd", "lz4", "blosc2"]


def map_of(array: Any) -> mmap.mmap | None:
    """The map of a record file an array's memory belongs to, or None."""
    base = array
    while base is not None:
        if isinstance(base, FileMap):
            return base
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return None


def shares_map(array: Any) -> bool:
    found = map_of(array)
    return found is not None and bool(np.shares_memory(array, np.frombuffer(found, np.uint8)))


def spikes(count: int = 1 << 19) -> Any:
    """Spike times of a sparse train, as a simulator writes them (sorted int64 steps)."""
    rng = np.random.default_rng(1)
    return np.cumsum(rng.geometric(0.02, size=count)).astype(np.int64)


def value() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "spikes": spikes(),  # 4 MiB, compressible
        "noise": rng.normal(size=1 << 18),  # 2 MiB of random float64: does not compress
        "traces": [np.ones((64, 64)), np.arange(10, dtype=np.int32)],
        "label": "run 1",
    }


def check_equal(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got["label"] == expected["label"]
    np.testing.assert_array_equal(got["spikes"], expected["spikes"])
    np.testing.assert_array_equal(got["noise"], expected["noise"])
    for got_array, expected_array in zip(got["traces"], expected["traces"], strict=True):
        np.testing.assert_array_equal(got_array, expected_array)


def arrays(got: dict[str, Any]) -> list[Any]:
    return [got["spikes"], got["noise"], *got["traces"]]


@pytest.fixture
def options(backend_name: str, tmp_path: Path) -> dict[str, Any]:
    """Django keeps records in files only with a data_root_dir."""
    if backend_name.startswith("django") and not backend_name.endswith("-s3"):
        return {"data_root_dir": tmp_path / "records"}
    return {}


# -- mapped reads, every back-end -------------------------------------------------------------


async def test_mmap_gives_read_only_arrays_mapped_from_record_files(
    make_store: Any, backend_name: str, options: dict[str, Any]
) -> None:
    component, expected = PlainComponent({"n": 1}), value()
    async with make_store(**options) as store:
        await store.store(component, "v", expected)
        got = await store.retrieve(component, "v", mmap=True)
        check_equal(got, expected)
        assert not any(array.flags.writeable for array in arrays(got))
        # the large arrays come straight from the map; elsewhere read, read-only all the same
        assert shares_map(got["spikes"]) is (backend_name in MAPPED)
        assert shares_map(got["noise"]) is (backend_name in MAPPED)
        (many,) = await store.retrieve_many([(component, "v")], mmap=True)
        check_equal(many, expected)
        assert shares_map(many["spikes"]) is (backend_name in MAPPED)
        computed = await store.get_or_compute(component, "v", lambda: 1 / 0, mmap=True)
        assert shares_map(computed["spikes"]) is (backend_name in MAPPED)
        plain = await store.retrieve(component, "v")  # the default: copies, writable
        check_equal(plain, expected)
        assert all(array.flags.writeable for array in arrays(plain))
        assert not shares_map(plain["spikes"])


async def test_copy_on_write_maps_are_writable_and_leave_the_entry_alone(
    make_store: Any, backend_name: str, options: dict[str, Any]
) -> None:
    component, expected = PlainComponent({"n": 2}), value()
    async with make_store(**options) as store:
        await store.store(component, "v", expected)
        got = await store.retrieve(component, "v", mmap="c")
        assert shares_map(got["spikes"]) is (backend_name in MAPPED)
        got["spikes"][:] = -1
        assert (got["spikes"] == -1).all()
        check_equal(await store.retrieve(component, "v"), expected)
        check_equal(await store.retrieve(component, "v", mmap=True), expected)


async def test_a_mapped_array_keeps_its_contents_when_the_entry_is_replaced_or_deleted(
    make_store: Any, options: dict[str, Any]
) -> None:
    component, first = PlainComponent({"n": 3}), value()
    async with make_store(**options) as store:
        await store.store(component, "v", first)
        old = await store.retrieve(component, "v", mmap=True)
        await store.store(component, "v", {**first, "spikes": first["spikes"] * 2})
        np.testing.assert_array_equal(old["spikes"], first["spikes"])
        replaced = await store.retrieve(component, "v", mmap=True)
        np.testing.assert_array_equal(replaced["spikes"], first["spikes"] * 2)
        assert await store.delete(component) == 1
        await store.cleanup(older_than=0)
        np.testing.assert_array_equal(old["spikes"], first["spikes"])
        np.testing.assert_array_equal(replaced["spikes"], first["spikes"] * 2)
        assert int(old["spikes"].sum()) == int(first["spikes"].sum())  # every page readable


async def test_a_store_maps_by_default_when_made_so(
    make_store: Any, backend_name: str, options: dict[str, Any]
) -> None:
    component, expected = PlainComponent({"n": 4}), value()
    async with make_store(mmap=True, **options) as store:
        await store.store(component, "v", expected)
        got = await store.retrieve(component, "v")
        assert shares_map(got["spikes"]) is (backend_name in MAPPED)
        assert not got["spikes"].flags.writeable
        unmapped = await store.retrieve(component, "v", mmap=False)
        assert unmapped["spikes"].flags.writeable
        assert not shares_map(unmapped["spikes"])


@pytest.mark.parametrize("bad", ["w", "yes", 2, "r+"])
async def test_a_bad_mmap_argument_is_a_configuration_error(tmp_path: Path, bad: Any) -> None:
    async with AsyncShelveDataStore(tmp_path / "store") as store:
        with pytest.raises(ConfigurationError, match="mmap must be True"):
            await store.retrieve(PlainComponent({"n": 1}), "v", mmap=bad)
    with pytest.raises(ConfigurationError, match="mmap must be True"):
        AsyncShelveDataStore(tmp_path / "other", mmap=bad)


async def test_store_urls_take_mmap_and_compression(tmp_path: Path) -> None:
    component, expected = PlainComponent({"n": 5}), value()
    async with await open_store(f"sqlite:///{tmp_path}/a.db?mmap=1&compression=zstd:5") as store:
        assert str(store._parts.context.codec.compression) == "zstd:5"
        await store.store(component, "v", expected)
        got = await store.retrieve(component, "v")
        check_equal(got, expected)
        assert shares_map(got["noise"])  # random: stored as is, so mapped
        assert not shares_map(got["spikes"])  # compressed: decompressed into memory
        spec = store.spec
        assert spec is not None
        assert spec.compression == store._parts.context.codec.compression
    async with await open_store(f"file://{tmp_path}/files?mmap=c") as store:
        await store.store(component, "v", expected)
        got = await store.retrieve(component, "v")
        assert shares_map(got["spikes"])
        assert got["spikes"].flags.writeable
    with pytest.raises(ConfigurationError, match="mmap must be True"):
        await open_store(f"file://{tmp_path}/files?mmap=sometimes")
    with pytest.raises(ConfigurationError, match="unknown compression 'gzip'"):
        await open_store(f"file://{tmp_path}/files?compression=gzip")


async def test_a_spec_carries_the_stores_mapping_to_other_processes(tmp_path: Path) -> None:
    """``open_store(spec)`` and an executor worker's store read as the store they describe:
    mapped when it maps (the spec carried every option but ``mmap``, so the copy read its
    arrays into memory)."""
    component, expected = PlainComponent({"n": 8}), value()
    async with AsyncShelveDataStore(tmp_path / "files", mmap="c", verify_on_read=False) as store:
        await store.store(component, "v", expected)
        spec = store.spec
        assert spec is not None
        assert spec.settings.mmap == "c"
        async with await open_store(pickle.loads(pickle.dumps(spec))) as again:
            got = await again.retrieve(component, "v")
            check_equal(got, expected)
            assert shares_map(got["spikes"])
            assert got["spikes"].flags.writeable  # copy-on-write, as the store maps
            assert again.verify_on_read is False
        worker = WorkerStore(spec)
        await worker.lifecycle.ready()
        try:
            assert worker.context.mmap == "c"
            assert worker.context.codec.verify_on_read is False
        finally:
            await worker.aclose()


# -- the blocking API ---------------------------------------------------------------------------


def test_the_blocking_api_maps_too(tmp_path: Path) -> None:
    component, expected = PlainComponent({"n": 6}), value()
    for store in (ShelveDataStore(tmp_path / "files"), SQLiteDataStore(tmp_path / "db.sqlite")):
        with store:
            store.store(component, "v", expected)
            got = store.retrieve(component, "v", mmap=True)
            check_equal(got, expected)
            assert shares_map(got["spikes"])
            assert not got["spikes"].flags.writeable
            (many,) = store.retrieve_many([(component, "v")], mmap="c")
            assert shares_map(many["spikes"])
            assert many["spikes"].flags.writeable
            hit = store.get_or_compute(component, "v", lambda: 1 / 0, mmap=True)
            assert shares_map(hit["spikes"])
            assert store.retrieve(component, "v")["spikes"].flags.writeable


def test_the_blocking_django_store_maps_through_its_portal(tmp_path: Path) -> None:
    from adatastore import DjangoORMDataStore

    component, expected = PlainComponent({"n": 7}), value()
    database = {"ENGINE": "sqlite3", "NAME": str(tmp_path / "django.db")}
    with DjangoORMDataStore(database, tmp_path / "records", mmap=True) as store:
        store.store(component, "v", expected)
        got = store.retrieve(component, "v")
        check_equal(got, expected)
        assert shares_map(got["spikes"])
        assert not got["spikes"].flags.writeable
        assert not shares_map(store.retrieve(component, "v", mmap=False)["spikes"])


# -- integrity ----------------------------------------------------------------------------------


def record_file(root: Path) -> Path:
    """The largest file under `root`: the one record stored there."""
    return max((path for path in root.rglob("*") if path.is_file()), key=lambda p: p.stat().st_size)


def flip(path: Path, offset: int) -> None:
    """Damage one byte the way a disk or a bad copy would: a new file in its place (a
    record file rewritten in place under a live map is the SIGBUS case the docs warn of)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    temp = path.with_name(path.name + ".damaged")
    temp.write_bytes(data)
    os.replace(temp, path)


async def test_a_mapped_read_checks_the_header_and_verify_checks_the_payload(
    tmp_path: Path,
) -> None:
    component, expected = PlainComponent({"n": 8}), value()
    async with AsyncShelveDataStore(tmp_path / "store") as store:
        await store.store(component, "v", expected)
        path = record_file(tmp_path / "store")
        flip(path, path.stat().st_size - 100)  # inside the last array's bytes
        # the digest is not computed on mapped reads (it would read every page)...
        damaged = await store.retrieve(component, "v", mmap=True)
        assert not np.array_equal(damaged["traces"][0], expected["traces"][0])
        # ...a plain read computes it, and verify() finds the damage
        with pytest.raises(CorruptEntryError, match="checksum"):
            await store.retrieve(component, "v")
        report = await store.verify()
        assert [item.attribute_name for item in report.damaged] == ["v"]
        flip(path, 20)  # inside the header: a mapped read refuses it
        with pytest.raises(CorruptEntryError, match="header"):
            await store.retrieve(component, "v", mmap=True)


async def test_a_signed_store_checks_mapped_records_signatures(tmp_path: Path) -> None:
    component, expected = PlainComponent({"n": 9}), value()
    key = b"k" * 32
    async with AsyncShelveDataStore(tmp_path / "store", signing_key=key, mmap=True) as store:
        await store.store(component, "v", expected)
        check_equal(await store.retrieve(component, "v"), expected)
        path = record_file(tmp_path / "store")
        flip(path, path.stat().st_size - 100)
        with pytest.raises(IntegrityError, match="signature"):
            await store.retrieve(component, "v")


# -- compression, every back-end ----------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
async def test_compressed_records_round_trip(
    make_store: Any, backend_name: str, options: dict[str, Any], codec: str
) -> None:
    component, expected = PlainComponent({"n": 10}), value()
    async with make_store(compression=codec, **options) as store:
        await store.store(component, "v", expected)
        await store.store(component, "small", {"x": 1})
        check_equal(await store.retrieve(component, "v"), expected)
        assert await store.retrieve(component, "small") == {"x": 1}
        got = await store.retrieve(component, "v", mmap=True)  # decompressed, read-only
        check_equal(got, expected)
        assert not got["spikes"].flags.writeable
        assert not shares_map(got["spikes"])
        # the random part was stored as it is: mapped where files are
        assert shares_map(got["noise"]) is (backend_name in MAPPED)
        sizes = {entry.attribute_name: entry.size for entry in await store.list_contents()}
        assert sizes["v"] < sum(array.nbytes for array in arrays(expected))  # spikes shrank


def raster(steps: int = 1 << 20, neurons: int = 8) -> Any:
    """Spikes of a few neurons as a simulator's raster: one byte per time step, mostly 0."""
    rng = np.random.default_rng(2)
    return (rng.random((steps, neurons)) < 0.01).astype(np.uint8)


@pytest.mark.parametrize("codec", CODECS)
async def test_a_compressible_array_takes_at_most_half_its_size(tmp_path: Path, codec: str) -> None:
    component = PlainComponent({"n": 11})
    train = raster()  # 8 MiB
    async with AsyncShelveDataStore(tmp_path / "store", compression=codec) as store:
        await store.store(component, "v", train)
        (entry,) = await store.list_contents()
        assert entry.size <= 0.5 * train.nbytes, (codec, entry.size / train.nbytes)
        np.testing.assert_array_equal(await store.retrieve(component, "v"), train)


@pytest.mark.parametrize("codec", CODECS)
async def test_any_store_reads_compressed_records(tmp_path: Path, codec: str) -> None:
    component, expected = PlainComponent({"n": 12}), value()
    async with AsyncSQLiteDataStore(tmp_path / "db.sqlite", compression=codec) as writer:
        await writer.store(component, "v", expected)
    async with AsyncSQLiteDataStore(tmp_path / "db.sqlite") as reader:  # no compression
        assert reader._parts.context.codec.compression is None
        check_equal(await reader.retrieve(component, "v"), expected)
        await reader.store(component, "plain", expected)  # written uncompressed
    async with AsyncSQLiteDataStore(tmp_path / "db.sqlite", compression="zstd") as other:
        check_equal(await other.retrieve(component, "plain"), expected)
        check_equal(await other.retrieve(component, "v"), expected)


async def test_damage_inside_a_compressed_part_is_reported(tmp_path: Path) -> None:
    component = PlainComponent({"n": 13})
    train = spikes()
    async with AsyncShelveDataStore(
        tmp_path / "store", compression="zstd", verify_on_read=False
    ) as store:
        await store.store(component, "v", train)
        path = record_file(tmp_path / "store")
        flip(path, path.stat().st_size - 1000)  # inside a compressed chunk, not digested
        with pytest.raises(CorruptEntryError, match=r"decompress|wrong size"):
            await store.retrieve(component, "v")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("gzip", "unknown compression 'gzip'"),
        ("zstd:99", "zstd levels go from -7 to 22"),
        ("lz4:fast", "level 'fast' is not a number"),
        (3, "compression must be a codec name"),
    ],
)
def test_bad_compression_settings_are_configuration_errors(
    tmp_path: Path, setting: Any, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ShelveDataStore(tmp_path / "store", compression=setting)


def test_a_missing_codec_library_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import zstandard now fails
    with pytest.raises(ConfigurationError, match=r"pip install 'adatastore\[zstd\]'"):
        ShelveDataStore(tmp_path / "store", compression="zstd")


def test_malformed_compressed_parts_are_value_errors() -> None:
    import struct

    from adatastore._codec.compression import Compression, compress_parts, decompress_part

    train = spikes()
    ((part,), (name,)) = compress_parts([train.data.cast("B")], Compression("zstd", 3))
    assert name == "zstd"
    good = bytes(part)
    assert bytes(decompress_part("zstd", memoryview(good))) == train.tobytes()
    size, chunk, count = struct.unpack_from("<QII", good)
    cases = {
        "unknown codec": ("brotli", good),
        "short": ("zstd", good[:8]),
        "bad table": ("zstd", struct.pack("<QII", size * 2, chunk, count) + good[16:]),
        "zero chunk": ("zstd", struct.pack("<QII", size, 0, count) + good[16:]),
        "truncated": ("zstd", good[:-1]),
        "garbage": ("zstd", good[: 16 + 4 * count] + bytes(len(good) - 16 - 4 * count)),
    }
    for what, (codec, data) in cases.items():
        try:
            decompress_part(codec, memoryview(data))
        except ValueError:
            continue
        pytest.fail(f"{what}: no ValueError")


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("dtype", ["int16", "float32", "int64", "complex128", "uint8"])
def test_shuffled_parts_of_every_item_size_round_trip(codec: str, dtype: str) -> None:
    from adatastore._codec.compression import Compression, compress_parts, decompress_part
    from adatastore.serializers import PickleSerializer

    # smooth values (they compress), an odd length (a tail shorter than a chunk), and a
    # Fortran-ordered array (pickled out of band as it is)
    smooth = (np.arange(3 * (1 << 18) + 7) // 5).astype(dtype)
    fortran = np.asfortranarray(np.tile(smooth[:6000], (2, 1)))
    for array in (smooth, fortran):
        parts = PickleSerializer().dumps(array)
        stored, names = compress_parts(parts, Compression(codec, 1))
        assert names[1] == codec  # the array's part was compressed
        raw = [
            decompress_part(name, memoryview(part)) if name else memoryview(part)
            for name, part in zip(names, stored, strict=True)
        ]
        np.testing.assert_array_equal(PickleSerializer().loads(raw), array)


class ThreadNoting(PickleSerializer):
    """Pickle, noting the thread each decode runs on."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def loads(self, parts: Sequence[memoryview]) -> Any:
        self.threads.append(threading.current_thread())
        return super().loads(parts)


@pytest.mark.asyncio_only
async def test_a_mapped_record_decodes_on_the_loop_only_when_that_reads_little(
    tmp_path: Path,
) -> None:
    serializer = ThreadNoting()
    component = PlainComponent({"n": 15})
    objects = [float(number) for number in range(300_000)]  # ~2.7 MB of in-band pickle
    async with AsyncShelveDataStore(tmp_path / "store", serializer=serializer) as store:
        await store.store(component, "arrays", value())
        await store.store(component, "objects", objects)
        loop_thread = threading.current_thread()
        check_equal(await store.retrieve(component, "arrays", mmap=True), value())
        assert serializer.threads[-1] is loop_thread  # a few hundred bytes to unpickle
        assert await store.retrieve(component, "objects", mmap=True) == objects
        assert serializer.threads[-1] is not loop_thread  # megabytes: a worker thread
