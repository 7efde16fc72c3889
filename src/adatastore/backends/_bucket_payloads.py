"""Record payloads in a bucket, their index in a database: ``payloads="s3://bucket/prefix"``.

The same surface as `adatastore._storage.payloads.PayloadFiles` (the SQLite back-end's payload
directory), so the database keeps rows, keys, locks and listings and names each large
record by ``<32 hex>.rec``; the record itself is the object ``<prefix>/<hh>/<name>``.

A record goes up under its final name (random, so no two writers meet) before the
transaction that stores its row: a failed transaction deletes it, a writer killed in
between leaves an object no row names, which `remove_unreferenced` (``cleanup``) finds and
deletes once it is older than the clean-up's age. Deleted and replaced records are
deleted by the transaction's garbage collection, as files are. Names read from the
database are used only if they are of exactly that form (`is_name`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .._runtime.masking import mask_password
from .._storage.fsio import MapMode
from .._storage.payloads import NotOurs, foreign_name, is_name
from ..errors import ConfigurationError
from ..serializers import Buffer
from ..stats import logger
from ._bucket import PART_SIZE, Bucket, environment_endpoint, environment_region, record_size

__all__ = ["BucketPayloads"]

_OPTIONS = {"endpoint": str, "region": str, "timeout": float, "concurrency": int}


class BucketPayloads:
    """Payload records as objects under `prefix` in a bucket (see the module docstring)."""

    def __init__(self, url: str, *under: str) -> None:
        """`url` is ``s3://bucket/prefix?endpoint=...``; the records go under `prefix`
        and then `under` (the Django back-end's ``records/<database uid>``)."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.username or parts.password:
            raise ConfigurationError(
                f"payloads must be an s3:// URL with a bucket and no credentials "
                f"(s3://bucket/prefix?endpoint=...), not {url.split('@')[-1]!r}"
            )
        options: dict[str, Any] = {}
        shown = mask_password(url, _OPTIONS)  # for messages: no secret option's value
        for name, text in parse_qsl(parts.query, keep_blank_values=True):
            kind = _OPTIONS.get(name)
            if kind is None:
                raise ConfigurationError(
                    f"payloads URL {shown!r}: unknown option {name!r} "
                    f"(allowed: {', '.join(sorted(_OPTIONS))})"
                )
            try:
                options[name] = kind(text)
            except ValueError:
                raise ConfigurationError(
                    f"payloads URL {shown!r}: option {name!r} must be a {kind.__name__}"
                ) from None
        self.url = url
        self.prefix = "/".join(part for part in (*parts.path.split("/"), *under) if part)
        if ".." in self.prefix.split("/"):
            raise ConfigurationError(f"payloads URL {shown!r}: not a usable prefix")
        self.path = f"s3://{parts.netloc}/{self.prefix}".rstrip("/")
        """Where the payloads are, for messages."""
        self.bucket = Bucket(
            parts.netloc,
            where=f"payloads {self.path!r}",
            endpoint=options.get("endpoint") or environment_endpoint(),
            region=options.get("region") or environment_region(),
            credentials=(None, None, None),
            timeout=float(options.get("timeout", 10.0)),
            concurrency=int(options.get("concurrency", 32)),
            part_size=PART_SIZE,
        )

    def close(self) -> None:
        self.bucket.close()

    def _object(self, name: str) -> str:
        if not is_name(name):
            raise NotOurs(name)
        return "/".join(filter(None, (self.prefix, name[:2], name)))

    # -- writing ---------------------------------------------------------------------------------

    def write_temp(self, record: Sequence[Buffer], *, durable: bool) -> tuple[str, str]:
        """PUT a record under a new name; (its name, the same name: there is no temporary
        one to move). `durable` needs nothing more: a completed PUT is durable."""
        name = secrets.token_hex(16) + ".rec"
        try:
            size = record_size(record)
            if size > self.bucket.part_size:
                self.bucket.upload(self._object(name), record, size)
            else:
                self.bucket.put(self._object(name), b"".join(record))
        except Exception as error:
            raise self.bucket.translate(error) from None
        return name, name

    def move_in(self, temp: str, name: str, *, durable: bool) -> None:
        """Nothing: the object is in place already; the row that names it commits now."""

    def remove_temp(self, temp: str) -> None:
        """A record whose transaction failed: delete its object."""
        self.remove(temp)

    def remove(self, name: str) -> None:
        """Delete a record's object; names that are not ours are left alone."""
        if not is_name(name):
            logger.warning("not removing %r: not a record name adatastore makes", name)
            return
        try:
            self.bucket.delete_many([self._object(name)])
        except Exception as error:
            raise self.bucket.translate(error) from None

    def remove_dead_temps(self, older_than: float | None = None) -> int:
        """Nothing: there are no temporary objects (see `remove_unreferenced`)."""
        return 0

    # -- reading ---------------------------------------------------------------------------------

    def read(self, name: str, mapped: MapMode | None = None) -> Buffer | None:
        """A record by name (objects are never mapped: `mapped` is ignored)."""
        try:
            return self.bucket.read(self._object(name))
        except NotOurs:
            raise
        except Exception as error:
            raise self.bucket.translate(error) from None

    def read_entry(
        self, key: str, attribute_name: str, name: str, mapped: MapMode | None = None
    ) -> Buffer | None:
        try:
            return self.read(name)
        except NotOurs:
            raise foreign_name(key, attribute_name, name) from None

    def read_head_or_none(self, name: str, size: int) -> bytes | None:
        try:
            found = self.bucket.get(self._object(name), Range=f"bytes=0-{size - 1}")
        except NotOurs:
            return None
        except Exception as error:
            raise self.bucket.translate(error) from None
        return None if found is None else bytes(found["Body"].read())

    def place_exists(self) -> bool:
        """Whether any object is under the prefix (asked when a record is missing: none
        at all, and the store was opened with the wrong bucket or prefix)."""
        under = self.prefix + "/" if self.prefix else ""
        try:
            found = self.bucket.client.list_objects_v2(
                Bucket=self.bucket.name, Prefix=under, MaxKeys=1
            )
        except Exception as error:
            raise self.bucket.translate(error) from None
        return bool(found.get("KeyCount") or found.get("Contents"))

    # -- clean-up --------------------------------------------------------------------------------

    def remove_unreferenced(self, referenced: set[str], older_than: float) -> tuple[int, list[str]]:
        """Delete the objects no row names, older than `older_than` seconds (a write in
        progress names its object only when it commits), and the multipart uploads a
        killed writer left; report (never delete) objects that are not ours."""
        now = time.time()
        doomed, foreign = [], []
        under = self.prefix + "/" if self.prefix else ""
        try:
            for item in self.bucket.listing(under):
                relative = item["Key"][len(under) :]
                fan, _, name = relative.partition("/")
                if not is_name(name) or fan != name[:2]:
                    foreign.append(relative)
                elif name not in referenced and now - item["LastModified"].timestamp() > older_than:
                    doomed.append(item["Key"])
            self.bucket.delete_many(doomed)
            aborted = 0
            for upload in self.bucket.uploads(under):
                if self.bucket.upload_age(upload, now) > older_than:
                    self.bucket.abort(upload)
                    aborted += 1
        except Exception as error:
            raise self.bucket.translate(error) from None
        for name in foreign:
            logger.warning("%s: %r is not an object adatastore made; left alone", self.path, name)
        return len(doomed) + aborted, foreign
