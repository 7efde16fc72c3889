"""Signed payloads: unsigned, tampered or moved records are refused before unpickling."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from components import SimpleComponent
from helpers import StoreFactory

from adatastore import (
    AsyncDataStore,
    AsyncDjangoORMDataStore,
    AsyncShelveDataStore,
    AsyncSQLiteDataStore,
    DjangoORMDataStore,
    MemoryDataStore,
    ShelveDataStore,
    SQLiteDataStore,
    SyncDataStore,
    open_store_sync,
)
from adatastore._codec import record as _record
from adatastore._storage import naming as _naming
from adatastore.errors import ConfigurationError, IntegrityError

KEY = secrets.token_bytes(32)
OLD_KEY = "an old signing key, still valid"
NEW_KEY = "the new signing key for this lab"

TRIGGERED: list[str] = []


def _trap() -> str:
    TRIGGERED.append("unpickled!")
    return "the attacker's value"


class Trap:
    """A value whose unpickling runs code: what an attacker would plant."""

    def __reduce__(self) -> tuple[Callable[[], str], tuple[()]]:
        return (_trap, ())


# Back-ends where two store objects can share one storage (one signed, one not).
SHARED: dict[str, Callable[[Path, dict[str, Any]], AsyncDataStore]] = {
    "files": lambda d, o: AsyncShelveDataStore(d / "files", **o),
    "sqlite": lambda d, o: AsyncSQLiteDataStore(d / "s.db", **o),
    "django-sqlite": lambda d, o: AsyncDjangoORMDataStore(
        {"ENGINE": "sqlite3", "NAME": str(d / "dj.db")}, **o
    ),
}


@pytest.mark.anyio
async def test_signed_round_trip(make_store: StoreFactory) -> None:
    async with make_store(signing_key=KEY) as store:
        c = SimpleComponent({"a": 1})
        await store.store(c, "x", {"value": [1, 2]})
        assert await store.retrieve(c, "x") == {"value": [1, 2]}
        assert (await store.verify()).ok


@pytest.mark.anyio
@pytest.mark.asyncio_only
@pytest.mark.parametrize("backend", list(SHARED))
async def test_unsigned_record_is_refused_and_never_unpickled(backend: str, tmp_path: Path) -> None:
    make = SHARED[backend]
    c = SimpleComponent({"a": 1})
    async with make(tmp_path, {}) as attacker:  # can write to the storage, has no key
        await attacker.store(c, "x", Trap())
    TRIGGERED.clear()
    async with make(tmp_path, {"signing_key": KEY}) as store:
        with pytest.raises(IntegrityError, match="not signed"):
            await store.retrieve(c, "x")
        report = await store.verify()
        assert [d.reason for d in report.damaged] == ["the record is not signed"]
        assert (await store.verify(repair=True)).removed == 1
        assert await store.retrieve(c, "x") is None
    assert TRIGGERED == []


def _record_path(store: AsyncShelveDataStore, component: object, name: str) -> Path:
    key = store.key_of(component)
    return Path(store.root_dir, _naming.encode_name(key), _naming.encode_name(name) + ".rec")


class _Replay:
    """Signs nothing: puts an old signature on new contents (a forgery attempt)."""

    def __init__(self, signature: str) -> None:
        self.signature = signature

    def sign(self, *args: object) -> str:
        return self.signature


@pytest.mark.anyio
async def test_tampered_record_with_a_valid_checksum_is_refused(tmp_path: Path) -> None:
    c = SimpleComponent({"a": 1})
    async with AsyncShelveDataStore(tmp_path, signing_key=KEY) as store:
        await store.store(c, "x", "honest value")
        path = _record_path(store, c, "x")
        header, _ = _record.unseal(bytearray(path.read_bytes()))
        assert header.signature2 is not None  # contents and provenance signed
        assert header.signature is None
        import pickle

        forged = _record.seal(
            "pickle",
            "x",
            [pickle.dumps(Trap(), protocol=5)],
            key=store.key_of(c),
            signer=_Replay(header.signature2),  # type: ignore[arg-type]
        )
        path.write_bytes(b"".join(bytes(part) for part in forged))
        TRIGGERED.clear()
        with pytest.raises(IntegrityError, match="does not match"):
            await store.retrieve(c, "x")
        assert TRIGGERED == []


@pytest.mark.anyio
async def test_a_signed_record_cannot_be_moved_to_another_entry(tmp_path: Path) -> None:
    victim, other = SimpleComponent({"victim": 1}), SimpleComponent({"other": 1})
    async with AsyncShelveDataStore(tmp_path, signing_key=KEY) as store:
        await store.store(other, "x", "signed, but for another entry")
        await store.store(victim, "x", "the real value")
        _record_path(store, victim, "x").write_bytes(_record_path(store, other, "x").read_bytes())
        with pytest.raises(IntegrityError):
            await store.retrieve(victim, "x")


@pytest.mark.anyio
async def test_key_rotation(tmp_path: Path) -> None:
    c_old, c_new = SimpleComponent({"v": "old"}), SimpleComponent({"v": "new"})
    async with AsyncShelveDataStore(tmp_path, signing_key=OLD_KEY) as before:
        await before.store(c_old, "x", "signed with the old key")
    async with AsyncShelveDataStore(tmp_path, signing_key=[NEW_KEY, OLD_KEY]) as rotating:
        assert await rotating.retrieve(c_old, "x") == "signed with the old key"
        await rotating.store(c_new, "x", "signed with the new key")
    async with AsyncShelveDataStore(tmp_path, signing_key=NEW_KEY) as after:
        assert await after.retrieve(c_new, "x") == "signed with the new key"
        with pytest.raises(IntegrityError):
            await after.retrieve(c_old, "x")


@pytest.mark.anyio
async def test_signing_key_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADATASTORE_SIGNING_KEY", NEW_KEY)
    c = SimpleComponent({"env": 1})
    async with AsyncShelveDataStore(tmp_path) as from_environment:
        assert from_environment.signer is not None
        await from_environment.store(c, "x", 1)
    monkeypatch.delenv("ADATASTORE_SIGNING_KEY")
    async with AsyncShelveDataStore(tmp_path, signing_key=NEW_KEY) as explicit:
        assert await explicit.retrieve(c, "x") == 1
    async with AsyncShelveDataStore(tmp_path, signing_key=OLD_KEY) as other_key:
        with pytest.raises(IntegrityError):
            await other_key.retrieve(c, "x")


@pytest.mark.parametrize(
    ("key", "message"),
    [("short", "at least 16 bytes"), ([], "empty list"), (42, "must be bytes, str")],
)
def test_bad_signing_keys(key: Any, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=message):
        AsyncShelveDataStore(tmp_path, signing_key=key)


def test_every_constructor_takes_a_signing_key(tmp_path: Path) -> None:
    c = SimpleComponent({"a": 1})
    stores: list[SyncDataStore[Any]] = [
        ShelveDataStore(tmp_path / "files", signing_key=KEY),
        SQLiteDataStore(tmp_path / "s.db", signing_key=KEY),
        MemoryDataStore(signing_key=KEY),
        DjangoORMDataStore({"ENGINE": "sqlite3", "NAME": str(tmp_path / "d.db")}, signing_key=KEY),
        open_store_sync(f"sqlite:///{tmp_path}/url.db", signing_key=KEY),
    ]
    for store in stores:
        with store:
            assert store.async_store.signer is not None
            store.store(c, "x", 1)
            assert store.retrieve(c, "x") == 1
