"""Compression of a record's parts: the codecs, and the chunked format that holds them.

A store configured with ``compression="zstd"`` (``"lz4"``, ``"blosc2"``; ``"zstd:9"``
with a level) compresses each part of a record on its own, in chunks of `CHUNK` bytes,
and the record's header names the codec per part (``""``: stored as is). So a reader
needs no configuration, old records read unchanged, and a part that does not compress
costs nothing on reads: the first chunk is tried, and a part whose sample does not shrink
below `WORTH` of its size is stored as is (random float64: 0.88 with zstd), as is any
single chunk that does not shrink. Parts that come from numpy arrays of 2- to 16-byte
items are byte-shuffled first (the i-th bytes of all items together): zstd then packs a
membrane potential to 0.76 of its size instead of 0.90, and spike times 2.3 times faster
(``benchmarks/arrays.py``); blosc2 shuffles by itself, given the itemsize. The codecs'
libraries are optional (the ``zstd``, ``lz4`` and ``blosc2`` extras) and imported when
first used.

A compressed part::

    u64 raw size | u32 chunk size | u32 chunk count | u32 shuffled item size (0: none) |
    u32 stored size per chunk (top bit: stored as is) | the chunks, one after another

Everything a reader is told is checked before it allocates or decodes: sizes add up, a
chunk declares (zstd's frame content size, blosc2's header) and decodes to exactly its
raw size, decoded into its slot of the output, or `decompress_part` raises `ValueError`,
which the codec reports as the entry's damage (`CorruptEntryError`). So reading a
damaged or planted record takes at most the memory its part headers declare: a 4-KB
record whose two chunks each decoded to 128 MiB grew the reader by 256 MiB before this
check. A record that truly declares more than fits is refused where allocating fails;
signed stores check the signature first.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import importlib.util
import itertools
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .._storage.fsio import allocate
from ..errors import ConfigurationError
from ..serializers import Buffer

__all__ = ["CHUNK", "CODECS", "WORTH", "Compression", "compress_parts", "decompress_part"]

CHUNK = 1 << 20
"""Bytes of a part compressed at once: bounds memory and keeps a sample cheap."""
WORTH = 0.8
"""A part is compressed when its first chunk shrinks below this fraction of its size:
random float64 shrinks to 0.88 with zstd (its exponents), not worth decoding at 0.9 GB/s
what a plain read gives at 4 GB/s; a membrane potential shrinks to 0.76."""
SMALLEST = 1024
"""Parts shorter than this are stored as they are (the codec's set-up outweighs them)."""

T = TypeVar("T")
_HEAD = struct.Struct("<QIII")
_WORKERS = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1, 4)
_RAW_FLAG = 1 << 31
_MAX_CHUNK = 1 << 26


@dataclass(frozen=True, slots=True)
class _Codec:
    module: str
    default_level: int
    levels: range
    compress: Callable[[Any, memoryview, int, int], bytes]
    decompress: Callable[[Any, memoryview, int, memoryview | None], Buffer]
    """Decode a chunk to exactly `size` bytes (a `ValueError` for any other size),
    checking the size the chunk declares before decoding: memory stays bounded by what
    the part's header declares, whatever a planted chunk claims. Into the slot given
    (and return it) where the library writes into a buffer, else into one of its own:
    a slot for a buffer that is copied again (unshuffled) cost a zero-fill and a copy."""
    shuffles: bool = False
    """Whether the codec shuffles bytes itself (else adatastore does, for arrays)."""


def _zstd_compress(module: Any, data: memoryview, level: int, itemsize: int) -> bytes:
    return bytes(module.ZstdCompressor(level=level).compress(data))


def _zstd_decompress(module: Any, data: memoryview, size: int, slot: memoryview | None) -> Buffer:
    # python-zstandard's one-shot decompress allocates what the frame declares and
    # ignores max_output_size when it declares a size (a 2-KB frame made it allocate
    # 128 MiB), so a declared size is trusted only when it is the slot's own. Such a frame
    # (every frame a store writes) is decoded in one shot, which libzstd bounds by that
    # size: the streaming reader cost 9 % more instructions on a 10-MB array retrieve.
    declared = module.frame_content_size(data)
    if declared == size:
        return _exactly(module.ZstdDecompressor().decompress(data), size)
    if declared != module.CONTENTSIZE_UNKNOWN:
        raise ValueError(f"it declares {declared} bytes for a slot of {size}")
    target = memoryview(bytearray(size)) if slot is None else slot
    with module.ZstdDecompressor().stream_reader(data, read_across_frames=False) as reader:
        _read_exactly(reader, target)
    return target


def _lz4_compress(module: Any, data: memoryview, level: int, itemsize: int) -> bytes:
    if level > 0:
        return bytes(
            module.block.compress(
                data, mode="high_compression", compression=level, store_size=False
            )
        )
    return bytes(module.block.compress(data, store_size=False))


def _lz4_decompress(module: Any, data: memoryview, size: int, slot: memoryview | None) -> Buffer:
    # bounded: a block decodes to at most uncompressed_size bytes, or fails
    return _exactly(module.block.decompress(data, uncompressed_size=size), size)


def _blosc2_compress(module: Any, data: memoryview, level: int, itemsize: int) -> bytes:
    return bytes(
        module.compress2(
            data,
            typesize=itemsize if itemsize in (1, 2, 4, 8, 16) else 1,
            clevel=level,
            codec=module.Codec.LZ4,
            filters=[module.Filter.SHUFFLE],
        )
    )


def _blosc2_decompress(module: Any, data: memoryview, size: int, slot: memoryview | None) -> Buffer:
    # decompress2 has no limit: the chunk's header says what it decodes to, checked first
    declared, stored, _ = module.get_cbuffer_sizes(data)
    if declared != size or stored != data.nbytes:
        raise ValueError(f"it declares {declared} bytes for a slot of {size}")
    target = memoryview(bytearray(size)) if slot is None else slot
    module.decompress2(data, dst=target)
    return target


def _exactly(raw: bytes, size: int) -> bytes:
    if len(raw) != size:
        raise ValueError(f"it decodes to {len(raw)} bytes for a slot of {size}")
    return raw


def _read_exactly(reader: Any, target: memoryview) -> None:
    """Fill `target` from a decompressing reader, which must then be at its end."""
    filled = 0
    while filled < target.nbytes:
        got = reader.readinto(target[filled:])
        if not got:
            raise ValueError(f"it decodes to {filled} bytes for a slot of {target.nbytes}")
        filled += got
    if reader.read(1):
        raise ValueError(f"it decodes to more than its slot of {target.nbytes} bytes")


CODECS: dict[str, _Codec] = {
    "zstd": _Codec("zstandard", 3, range(-7, 23), _zstd_compress, _zstd_decompress),
    "lz4": _Codec("lz4.block", 0, range(0, 17), _lz4_compress, _lz4_decompress),
    "blosc2": _Codec("blosc2", 5, range(0, 10), _blosc2_compress, _blosc2_decompress, True),
}
"""The codecs a store can write, by the name its records carry."""

_EXTRAS = {"zstandard": "zstd", "lz4.block": "lz4", "blosc2": "blosc2"}


def _missing(codec: _Codec) -> ConfigurationError:
    extra = _EXTRAS[codec.module]
    return ConfigurationError(
        f"{extra} compression needs the {codec.module.split('.')[0]!r} package: "
        f"pip install 'adatastore[{extra}]'"
    )


def _library(codec: _Codec) -> Any:
    """The codec's library, imported at its first use: in a worker thread (compressed
    records are sealed and decoded there), as an import may block (blosc2's does I/O)."""
    try:
        module = importlib.import_module(codec.module)
    except ImportError:
        raise _missing(codec) from None
    return importlib.import_module("lz4") if codec.module == "lz4.block" else module


@dataclass(frozen=True, slots=True)
class Compression:
    """How a store compresses what it writes: a codec name and its level."""

    codec: str
    level: int

    @classmethod
    def parse(cls, value: object) -> Compression | None:
        """``None``/``""``/``"none"`` → None; ``"zstd"``, ``"zstd:9"``, a `Compression`."""
        if value is None or isinstance(value, Compression):
            return value
        if not isinstance(value, str):
            raise ConfigurationError(
                f"compression must be a codec name such as 'zstd' or 'zstd:9', not {value!r}"
            )
        name, _, level_text = value.strip().lower().partition(":")
        if name in ("", "none"):
            return None
        codec = CODECS.get(name)
        if codec is None:
            raise ConfigurationError(
                f"unknown compression {name!r}: choose one of {', '.join(sorted(CODECS))}"
            )
        try:
            level = int(level_text) if level_text else codec.default_level
        except ValueError:
            raise ConfigurationError(f"compression level {level_text!r} is not a number") from None
        if level not in codec.levels:
            raise ConfigurationError(
                f"{name} levels go from {codec.levels.start} to {codec.levels.stop - 1}, "
                f"not {level}"
            )
        try:  # a missing library is said when the store is made, not at a write
            found = importlib.util.find_spec(codec.module.split(".")[0])
        except (ImportError, ValueError):
            found = None
        if found is None:
            raise _missing(codec)
        return cls(name, level)

    def __str__(self) -> str:
        return f"{self.codec}:{self.level}"


def _itemsize(part: Buffer) -> int:
    """The itemsize of the array a part comes from (pickle's out-of-band buffers are
    byte views whose ``obj`` is the array), 1 when unknown."""
    size = getattr(getattr(part, "obj", None), "itemsize", 1)
    return size if isinstance(size, int) else 1


def compress_parts(
    parts: Sequence[Buffer], compression: Compression
) -> tuple[list[Buffer], list[str]]:
    """The parts to store and, per part, the codec that packed it ("": as it is)."""
    codec = CODECS[compression.codec]
    library = _library(codec)
    stored: list[Buffer] = []
    names: list[str] = []
    for part in parts:
        packed = _compress(library, codec, compression.level, part)
        stored.append(part if packed is None else packed)
        names.append("" if packed is None else compression.codec)
    return stored, names


def _compress(library: Any, codec: _Codec, level: int, part: Buffer) -> bytearray | None:
    view = memoryview(part).cast("B")
    size = view.nbytes
    if size < SMALLEST:
        return None
    itemsize = _itemsize(part)
    shuffle = itemsize if itemsize in _SHUFFLED and not codec.shuffles else 0

    def pack(start: int) -> tuple[Buffer, int]:
        raw = view[start : start + CHUNK]
        packed = codec.compress(library, memoryview(_shuffle(raw, shuffle)), level, itemsize)
        if len(packed) < raw.nbytes:
            return packed, len(packed)
        return raw, raw.nbytes | _RAW_FLAG  # this chunk does not shrink: stored as is

    first = pack(0)
    if first[1] & _RAW_FLAG or first[1] >= WORTH * min(size, CHUNK):
        return None  # the sample does not compress: the part stays as it is
    chunks = [first, *_in_parallel(pack, range(CHUNK, size, CHUNK))]
    out = bytearray(_HEAD.pack(size, CHUNK, len(chunks), shuffle))
    out += struct.pack(f"<{len(chunks)}I", *(stored for _, stored in chunks))
    for chunk, _ in chunks:
        out += chunk
    return out


def _in_parallel(function: Callable[[int], T], items: range) -> list[T]:
    """`function` over `items`, in order; on several threads for large parts (the codecs
    release the GIL: on 2 cores, storing 100 MB of a membrane potential went 1.35-1.45x
    faster, retrieving it up to 1.6x). A pool per call: nothing outlives it, so nothing
    is left to a forked child."""
    workers = min(_WORKERS, len(items))
    if workers < 2:
        return [function(item) for item in items]
    with concurrent.futures.ThreadPoolExecutor(workers, "adatastore-codec") as pool:
        return list(pool.map(function, items))


def decompress_part(name: str, data: memoryview) -> memoryview:
    """The raw bytes of a part `name` compressed, in a fresh writable buffer; raises
    `ValueError` with what is wrong when the part is not what its header says."""
    codec = CODECS.get(name)
    if codec is None:
        raise ValueError(f"a part is compressed with {name!r}, which this version cannot read")
    if data.nbytes < _HEAD.size:
        raise ValueError("a compressed part is shorter than its header")
    size, chunk, count, shuffle = _HEAD.unpack_from(data)
    if not (0 < chunk <= _MAX_CHUNK) or count != -(-size // chunk):
        raise ValueError("a compressed part's chunk table does not match its size")
    if shuffle and (shuffle not in _SHUFFLED or chunk % shuffle):
        raise ValueError("a compressed part's item size is not one adatastore shuffles")
    table_end = _HEAD.size + 4 * count
    if table_end > data.nbytes:
        raise ValueError("a compressed part is shorter than its chunk table")
    sizes = struct.unpack_from(f"<{count}I", data, _HEAD.size)
    starts = list(
        itertools.accumulate((stored & ~_RAW_FLAG for stored in sizes), initial=table_end)
    )
    if starts[-1] != data.nbytes:
        raise ValueError("a compressed part's chunks do not add up to its length")
    library = _library(codec)
    try:
        out = allocate(size)
    except (MemoryError, ValueError):
        raise ValueError(f"a compressed part claims {size} bytes, more than fit here") from None

    def unpack(index: int) -> None:
        raw_size = min(chunk, size - index * chunk)
        source = data[starts[index] : starts[index + 1]]
        target = out[index * chunk : index * chunk + raw_size]
        if sizes[index] & _RAW_FLAG:
            if source.nbytes != raw_size:
                raise ValueError("a chunk stored as is has the wrong length")
            target[:] = source
            return
        try:
            raw = codec.decompress(library, source, raw_size, None if shuffle else target)
        except Exception as error:  # each library has errors of its own
            raise ValueError(f"a chunk does not decompress ({name}: {error})") from None
        if shuffle:
            _unshuffle(raw, shuffle, target)
        elif raw is not target:
            target[:] = raw

    _in_parallel(unpack, range(count))
    return out


_SHUFFLED = (2, 4, 8, 16)


def _shuffle(data: memoryview, itemsize: int) -> Buffer:
    """The bytes of `data`'s items regrouped: every item's first byte, then every second
    byte, ... (a tail shorter than an item stays at the end, as it is)."""
    if not itemsize:
        return data
    import numpy as np

    whole = data.nbytes - data.nbytes % itemsize
    items = np.frombuffer(data, np.uint8, whole).reshape(-1, itemsize)
    return items.T.tobytes() + bytes(data[whole:])


def _unshuffle(data: Buffer, itemsize: int, out: memoryview) -> None:
    """`_shuffle` undone, into `out`."""
    import numpy as np

    view = memoryview(data).cast("B")
    whole = view.nbytes - view.nbytes % itemsize
    planes = np.frombuffer(view, np.uint8, whole).reshape(itemsize, -1)
    np.frombuffer(out, np.uint8, whole).reshape(-1, itemsize)[:] = planes.T
    out[whole:] = view[whole:]
