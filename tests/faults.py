"""Helpers for the fault suite: store URLs per back-end, self-checking values, damage.

Every value the fault tests write can be checked on its own: `expected(writer, sequence)`
is a pure function, so a reader can tell a whole value from a torn or mixed one.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import s3server
from servers import fresh_database

from adatastore._storage import naming as _naming

# Back-ends that several processes can share.
SHARED_BACKENDS = ["files", "sqlite", "django-sqlite", "django-postgresql", "s3"]


@contextlib.contextmanager
def store_url(backend: str, directory: Path) -> Iterator[str]:
    """A store URL on fresh storage for `backend` (databases on servers are dropped after)."""
    if backend == "files":
        yield f"file://{directory}/files"
    elif backend == "sqlite":
        yield f"sqlite:///{directory}/store.db"
    elif backend == "django-sqlite":
        yield f"django+sqlite:///{directory}/django.db"
    elif backend == "django-postgresql":
        with fresh_database("postgresql") as database:
            yield f"django+postgresql://postgres@127.0.0.1:5432/{database['NAME']}"
    elif backend == "s3":  # a dead lock holder's lease lapses in 5 s (not 60)
        yield s3server.url(lease=5)
    else:  # pragma: no cover - a typo in a test
        raise ValueError(backend)


def expected(writer: int, sequence: int, big: bool = True) -> tuple[int, int, bytes]:
    """The value writer `writer` stores at step `sequence`: sizes from 32 B to ~600 KB."""
    block = hashlib.sha256(f"{writer}/{sequence}".encode()).digest()
    repeats = 1 + (writer * 7919 + sequence * 104729) % (19_000 if big else 40)
    return (writer, sequence, block * repeats)


def is_whole(value: Any) -> bool:
    """Whether `value` is exactly one of the values `expected` produces."""
    if not (isinstance(value, tuple) and len(value) == 3):
        return False
    writer, sequence, _ = value
    return value in (expected(writer, sequence, big=True), expected(writer, sequence, big=False))


# -- damaging stored records in place ---------------------------------------------------------


def _mangle(data: bytes, how: str) -> bytes:
    if how == "flip":
        damaged = bytearray(data)
        damaged[len(damaged) * 3 // 4] ^= 0x40
        return bytes(damaged)
    if how == "truncate":
        return data[: len(data) // 2]
    return b"garbage" * 10


def damage(backend: str, location: str, key: str, attribute: str, how: str) -> None:
    """Damage the stored record of (key, attribute): 'flip' a byte, 'truncate', 'garbage'."""
    if backend == "files":
        path = Path(location, _naming.encode_name(key), _naming.encode_name(attribute) + ".rec")
        path.write_bytes(_mangle(path.read_bytes(), how))
    elif backend == "sqlite":
        with contextlib.closing(sqlite3.connect(location)) as db, db:
            (payload,) = db.execute(
                "SELECT payload FROM entries WHERE key = ? AND attribute = ?", (key, attribute)
            ).fetchone()
            db.execute(
                "UPDATE entries SET payload = ? WHERE key = ? AND attribute = ?",
                (_mangle(bytes(payload), how), key, attribute),
            )
    elif backend == "s3":  # location: the store's URL
        bucket, prefix, endpoint = s3server.parse(location)
        client = s3server.S3Server(endpoint).client()
        name = "/".join(
            (prefix, "e", _naming.encode_name(key), _naming.encode_name(attribute) + ".rec")
        )
        record = client.get_object(Bucket=bucket, Key=name)["Body"].read()
        client.put_object(Bucket=bucket, Key=name, Body=_mangle(record, how))
    elif backend.startswith("django"):
        digest = hashlib.sha256(key.encode()).hexdigest()
        select = (
            "SELECT i.id, i.payload FROM adatastore_dataitem i JOIN adatastore_componentstate s"
            " ON i.state_id = s.id WHERE s.key_digest = {p} AND i.attribute = {p}"
        )
        update = "UPDATE adatastore_dataitem SET payload = {p} WHERE id = {p}"
        if backend == "django-sqlite":
            with contextlib.closing(sqlite3.connect(location)) as db, db:
                item, payload = db.execute(select.format(p="?"), (digest, attribute)).fetchone()
                db.execute(update.format(p="?"), (_mangle(bytes(payload), how), item))
        else:
            import psycopg

            with psycopg.connect(location) as server:
                row = server.execute(select.format(p="%s"), (digest, attribute)).fetchone()
                assert row is not None
                item, payload = row
                server.execute(update.format(p="%s"), (_mangle(bytes(payload), how), item))
    else:  # pragma: no cover
        raise ValueError(backend)
