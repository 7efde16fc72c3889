"""The Django back-end's record files, under `data_root_dir`: one storage format of its
own, kept apart from the ORM code that indexes it.

A row's ``path`` column names its record file: ``records/<uid>/<2 hex>/<32 hex>.rec`` for
files this version writes (each written once; <uid> is the database's `StoreMarker`, so
two databases can share a data_root_dir), ``<key>/<name>.rec`` for those adatastore 0.2
wrote. A value of any other form is planted or damaged and is never opened. Files are
reached beneath a descriptor of data_root_dir, without following links
(`adatastore._storage.beneath`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..._runtime import forks as _forks
from ..._storage import naming as _naming
from ..._storage.beneath import Directory, UnsafePath
from ..._storage.fsio import MapMode
from ..._storage.payloads import PayloadFiles, PayloadStore, is_name, missing
from ...errors import ConfigurationError, CorruptEntryError, StorageError
from ...serializers import Buffer
from ...stats import logger
from .._bucket_payloads import BucketPayloads

__all__ = ["RECORDS_DIR", "RecordFiles"]

RECORDS_DIR = "records"
"""Record files under data_root_dir: ``records/<uid>/<2 hex>/<32 hex>.rec``, each written
once, with <uid> the database's `StoreMarker` (see `adatastore._storage.payloads`)."""


class RecordFiles:
    """The record files of one store under `data_root_dir`, or objects in the bucket
    `payloads` names (neither: records in rows)."""

    def __init__(
        self, data_root_dir: Path | None, create: bool, payloads: str | None = None
    ) -> None:
        self.data_root_dir = data_root_dir
        self.create = create
        self.bucket = payloads
        """The ``s3://`` URL of the bucket holding the records, or None."""
        if payloads is not None:
            BucketPayloads(payloads)  # a malformed URL is refused here, before any request
        self.uid = ""
        self.payloads: PayloadStore = PayloadFiles(Path(os.devnull))  # made at open
        self.root: Directory | None = None

    @property
    def enabled(self) -> bool:
        """Whether records go out of the rows (to files, or to a bucket)."""
        return self.data_root_dir is not None or self.bucket is not None

    @property
    def where_shown(self) -> str:
        """Where the records are, for messages."""
        if self.bucket is not None:
            return f"the bucket {self.payloads.path!r}"
        return f"data_root_dir {str(self.data_root_dir)!r}"

    def prepare(self) -> None:
        """Check (and, with `create`, make) data_root_dir; blocking."""
        if self.data_root_dir is None:
            return
        root = self.data_root_dir.absolute()
        if root.exists() and not root.is_dir():
            raise ConfigurationError(f"data_root_dir {str(root)!r} is not a directory")
        if not self.create and not root.is_dir():
            raise ConfigurationError(f"no store at {str(root)!r}: no such data_root_dir")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigurationError(
                f"cannot create data_root_dir {str(root)!r}: {error}"
            ) from error
        self.data_root_dir = root

    def open(self, uid: str) -> None:
        """Open data_root_dir (or the bucket) for the store marked `uid`; remove what dead
        writers left."""
        self.uid = uid
        if self.data_root_dir is not None:
            self.root = Directory.open(str(self.data_root_dir))  # also for 0.2's files
        if self.bucket is not None:
            self.payloads = BucketPayloads(self.bucket, RECORDS_DIR, uid)
            return
        assert self.data_root_dir is not None
        self.payloads = PayloadFiles(self.data_root_dir, RECORDS_DIR, uid)
        self.payloads.remove_dead_temps()

    def forget(self) -> None:
        """In a forked child: a new `PayloadFiles` (the old one's lock may be held by a
        thread of the parent), the old one kept untouched."""
        _forks.remember(self.payloads)  # its client or its lock: the parent's
        if isinstance(self.payloads, BucketPayloads):
            self.payloads = BucketPayloads(self.payloads.url, RECORDS_DIR, self.uid)
        elif isinstance(self.payloads, PayloadFiles):
            self.payloads = PayloadFiles(self.payloads.base, *self.payloads.names)

    def close(self) -> None:
        self.payloads.close()
        if self.root is not None:
            self.root.close()

    def column(self, name: str) -> str:
        """The `path` column of a record file named `name` (see `RECORDS_DIR`)."""
        return f"{RECORDS_DIR}/{self.uid}/{name[:2]}/{name}"

    def where(self, path: object) -> tuple[str, str] | None:
        """Where the file a `path` column names is: ("ours", name) for this store's
        files, ("legacy", relative path) for those of adatastore 0.2, None when the
        value is not a name adatastore makes (planted, or damage: never used)."""
        if not isinstance(path, str):
            return None
        parts = path.split("/")
        if len(parts) == 4 and parts[:2] == [RECORDS_DIR, self.uid]:
            name = parts[3]
            return ("ours", name) if is_name(name) and parts[2] == name[:2] else None
        if len(parts) == 2 and parts[1].endswith(".rec") and all(map(_legacy_name, parts)):
            return ("legacy", path)
        return None

    def read(
        self, key: str, attribute_name: str, path: object, mapped: MapMode | None = None
    ) -> Buffer:
        """A record's file (blocking; mapped with `mapped`); damage and missing files are
        errors."""
        if not self.enabled:
            self.data_root()  # a ConfigurationError: this store was opened without either
        where = self.where(path)
        if where is None:
            raise CorruptEntryError(
                key,
                attribute_name,
                f"its row names the file {path!r}, which is not a name adatastore makes "
                "(planted, or damage): never opened",
            )
        try:
            if where[0] == "ours":
                data = self.payloads.read(where[1], mapped)
            else:  # ConfigurationError without a data_root_dir
                data = self.data_root().read(where[1], mapped)
        except UnsafePath as error:
            raise CorruptEntryError(
                key, attribute_name, f"its record file {error.relative!r} is {error.what}"
            ) from None
        except OSError as error:
            raise StorageError(f"data_root_dir {str(self.data_root_dir)!r}: {error}") from error
        if data is None:
            if where[0] == "ours":
                raise missing(self.payloads, key, attribute_name, f"record file {path!r}")
            raise CorruptEntryError(
                key,
                attribute_name,
                f"its record file {path!r} is missing from {self.where_shown} (deleted by hand?)",
            )
        return data

    def remove(self, path: object) -> None:
        """Remove the record file a `path` column names; foreign values are left alone."""
        where = self.where(path)
        if where is None:
            logger.warning("not removing %r: not a record file adatastore makes", path)
        elif where[0] == "ours":
            self.payloads.remove(where[1])
        else:
            entry, name = where[1].split("/")
            root = self.data_root()
            with contextlib.suppress(OSError), root.subdirectory(entry) as directory:
                directory.unlink(name)
                with contextlib.suppress(OSError):
                    root.rmdir(entry)

    def remove_unreferenced(self, paths: set[str], older_than: float) -> int:
        """Remove this store's record files (or objects) that no `path` column names, older
        than `older_than` seconds; blocking. Only this store's own ``records/<uid>/``:
        files of another database sharing data_root_dir (or the bucket), and anything
        else there, are never touched."""
        names = set()
        for path in paths:
            where = self.where(path)
            if where is not None and where[0] == "ours":
                names.add(where[1])
        removed, _ = self.payloads.remove_unreferenced(names, older_than)
        return removed

    def data_root(self) -> Directory:
        if self.root is None:
            raise ConfigurationError(
                "the entries of this store are files under a data_root_dir, but it was "
                "opened without one: give it (data_root_dir=..., or ?data_root_dir=... in "
                "the store's URL); nothing was judged damaged"
            )
        return self.root


def _legacy_name(part: str) -> bool:
    """A name as adatastore 0.2 made them (its `path` column held ``<key>/<name>.rec``)."""
    if not part or part.startswith(".") or "\\" in part or "\0" in part:
        return False
    stem = part.removesuffix(".rec")
    try:
        _naming.decode_name(stem)
    except ValueError:
        return bool(_naming.is_shortened(stem))
    return True
