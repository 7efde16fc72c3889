"""The Django back-end on PostgreSQL against the Django async ORM it runs on (issue 20):
a 1 KB retrieve hit against a raw ``aget`` of the same row, a 1 KB store against a raw
``aupdate_or_create`` of one row under an existing component state.

The peers do less than a store by design: ``aget`` fetches the row and decodes nothing
(our retrieve also checks the record and unpickles it); ``aupdate_or_create`` writes one
row (our store also upserts the component's type and state rows, in one transaction).
Needs PostgreSQL on 127.0.0.1:5432 as user ``postgres`` (what `.ci/run` starts); the
section is left out with a note when it is not there.
"""

from __future__ import annotations

import contextlib
import datetime
import pickle
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness import Component, Loop, Table, micros_per_call_async, small_value

import adatastore
from adatastore.keygenerators import canonical_hash

URL = "django+postgresql://postgres@127.0.0.1:5432/{name}?data_root_dir={data}"


@contextlib.contextmanager
def _database() -> Iterator[str]:
    import psycopg

    name = f"adatastore_bench_{secrets.token_hex(6)}"
    admin = psycopg.connect(
        host="127.0.0.1", port=5432, user="postgres", dbname="postgres", autocommit=True
    )
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def available() -> str | None:
    """None when PostgreSQL answers; else why the section cannot run."""
    try:
        import psycopg

        psycopg.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=15
        ).close()
    except Exception as error:  # any failure to connect means absent
        return f"PostgreSQL on 127.0.0.1:5432 is not reachable ({type(error).__name__})"
    return None


def run(rounds: int, count: int) -> list[Table]:
    """µs per operation, ours and the raw ORM interleaved, `rounds` times."""
    tables = {
        operation: Table(
            f"Django on PostgreSQL, 1 KB values, {count:,} keys: {operation}",
            "µs per entry",
            baseline=peer,
        )
        for operation, peer in (
            ("retrieve hit", "raw async ORM: aget"),
            ("store", "raw async ORM: aupdate_or_create"),
        )
    }
    with _database() as name, tempfile.TemporaryDirectory(prefix="adatastore-bench-") as data:
        loop = Loop()
        try:
            loop.run(_rounds(tables, URL.format(name=name, data=Path(data)), rounds, count))
        finally:
            loop.close()
    return list(tables.values())


async def _rounds(tables: dict[str, Table], url: str, rounds: int, count: int) -> None:
    components = [Component({"i": i, "model": {"tau": 20.0, "cell": "iaf"}}) for i in range(count)]
    values = [small_value(i) for i in range(count)]
    digests = [_digest(canonical_hash(component)) for component in components]
    store: Any = await adatastore.open_store(url)
    try:
        # importable once the store has set Django up
        from adatastore.backends.django.models import ComponentState, DataItem

        alias = store.backend.alias
        items = DataItem.objects.using(alias)
        for component, value in zip(components, values, strict=True):
            await store.store(component, "v", value)
        states = {
            state.key_digest: state
            async for state in ComponentState.objects.using(alias).filter(key_digest__in=digests)
        }
        now = datetime.datetime.now(datetime.UTC)

        async def raw_store(i: int) -> object:
            payload = pickle.dumps(values[i])
            return await items.aupdate_or_create(
                state=states[digests[i]],
                attribute="raw",
                defaults={"payload": payload, "size": len(payload), "stored_at": now},
            )

        async def raw_get(i: int) -> object:
            return await items.filter(state__key_digest=digests[i], attribute="v").aget()

        for _ in range(rounds):
            tables["retrieve hit"].add(
                "ours: AsyncDjangoORMDataStore",
                await micros_per_call_async(lambda i: store.retrieve(components[i], "v"), count),
            )
            tables["retrieve hit"].add(
                "raw async ORM: aget", await micros_per_call_async(raw_get, count)
            )
            tables["store"].add(
                "ours: AsyncDjangoORMDataStore",
                await micros_per_call_async(
                    lambda i: store.store(components[i], "w", values[i]), count
                ),
            )
            tables["store"].add(
                "raw async ORM: aupdate_or_create", await micros_per_call_async(raw_store, count)
            )
    finally:
        await store.aclose()


def _digest(key: str) -> str:
    from adatastore.backends.django._rows import digest

    return digest(key)
