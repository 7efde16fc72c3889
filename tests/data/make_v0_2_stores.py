"""Writes tests/data/v0.2/: a store of each back-end as adatastore 0.2.0 writes it.

Run once with 0.2.0 on the path (a worktree of the v0.2.0 commit, 60e2a48):
``PYTHONPATH=<worktree>/src:tests python tests/data/make_v0_2_stores.py tests/data/v0.2``.
tests/test_backend_objects.py opens them with the current version.
"""

import asyncio
import sys
from pathlib import Path

from components import SimpleComponent

import adatastore
from adatastore import AsyncShelveDataStore, AsyncSQLiteDataStore

LARGE = bytes(range(256)) * 1024  # 256 KiB: a payload file on SQLite


async def fill(store: adatastore.AsyncDataStore) -> None:
    up = SimpleComponent({"seed": 3})
    down = SimpleComponent({"a": 1, "b": {"c": 2.5}}, input=up, version="2")
    async with store:
        await store.store(up, "spikes", [1, 2, 3])
        await store.store(down, "rates", {"mean": 4.5})
        await store.store(down, "note", "text")
        await store.store(SimpleComponent({"large": True}), "blob", LARGE)


def main(target: Path) -> None:
    assert adatastore.__version__ == "0.2.0", adatastore.__version__
    target.mkdir(parents=True)
    asyncio.run(fill(AsyncShelveDataStore(target / "files")))
    asyncio.run(fill(AsyncSQLiteDataStore(target / "sqlite.db")))
    from adatastore import AsyncDjangoORMDataStore

    database = {"ENGINE": "sqlite3", "NAME": str(target / "django.db")}
    asyncio.run(fill(AsyncDjangoORMDataStore(database, data_root_dir=target / "django-files")))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
