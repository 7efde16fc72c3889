"""`ObjectBackend`: the bucket engine (see `adatastore.backends.objects` for the layout).

Every method is a blocking call of botocore requests (`_bucket`), translated to
`ConfigurationError`/`StorageError`; `ThreadedBackend` runs them in worker threads for
the async path. The listing of entries and their repair is `_listing`'s.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from ..._runtime.waiting import run_to_end
from ..._storage import locks as _locks
from ..._storage import naming as _naming
from ..._storage.leases import Leases, lease_expired
from ...backend import BackendSpec, RecordWrite, ThreadedBackend, Used
from ...errors import ConfigurationError, StorageError
from ...records import ComponentRecord, DamagedEntry, Entry
from ...serializers import Buffer
from .._bucket import (
    CONFLICT,
    MIN_PART_SIZE,
    NOT_FOUND,
    PART_SIZE,
    Bucket,
    environment_endpoint,
    environment_region,
    error_code,
    record_size,
)
from .._used_logs import BucketLogs
from ._listing import COMPONENT, MAX_JSON, RECORD_SUFFIX, EntryListing

FORMAT_NAME = "adatastore-objects"
FORMAT_VERSION = 1
MARKER = ".adatastore"
ENTRIES = "e/"
LEASES = "l/"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]\Z")
P = ParamSpec("P")
T = TypeVar("T")


def _s3_errors(
    method: Callable[Concatenate[ObjectBackend, P], T],
) -> Callable[Concatenate[ObjectBackend, P], T]:
    """botocore's errors as `ConfigurationError`/`StorageError` naming the store (and
    never the credentials)."""

    def translated(self: ObjectBackend, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(self, *args, **kwargs)
        except Exception as error:
            ours = self.objects.translate(error)
            if ours is error:
                raise
            raise ours from None

    functools.update_wrapper(translated, method)
    return translated


class ObjectBackend(ThreadedBackend):
    """Records as objects in a bucket (see the module docstring and
    `AsyncObjectDataStore`)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        create: bool = True,
        lease: float = 60.0,
        timeout: float = 10.0,
        concurrency: int = 32,
        part_size: int = PART_SIZE,
    ) -> None:
        if not isinstance(bucket, str) or not _BUCKET.match(bucket):
            raise ConfigurationError(
                f"{bucket!r} is not an S3 bucket name (3-63 characters: lower-case letters, "
                "digits, dots and hyphens)"
            )
        if not isinstance(prefix, str) or "\0" in prefix or ".." in prefix.split("/"):
            raise ConfigurationError(f"{prefix!r} is not a usable prefix in a bucket")
        for name, value in (("lease", lease), ("timeout", timeout)):
            if not (isinstance(value, int | float) and 0 < value < 1e9):
                raise ConfigurationError(f"{name} must be a positive number of seconds")
        if not (isinstance(concurrency, int) and concurrency >= 1):
            raise ConfigurationError("concurrency must be a positive whole number")
        if not (isinstance(part_size, int) and MIN_PART_SIZE <= part_size <= 5 << 30):
            raise ConfigurationError(
                f"part_size must be a whole number of bytes from {MIN_PART_SIZE} (5 MiB) to "
                "5 GiB, S3's limits"
            )
        if (access_key_id is None) != (secret_access_key is None):
            raise ConfigurationError(
                "give both access_key_id and secret_access_key, or neither (then the AWS "
                "environment is used)"
            )
        self.bucket = bucket
        self.prefix = "/".join(part for part in prefix.split("/") if part)
        self.endpoint = endpoint or environment_endpoint()
        self.region = region or environment_region()
        self._credentials = (access_key_id, secret_access_key, session_token)
        self.create = create
        self.lease = float(lease)
        self.timeout = float(timeout)
        self.concurrency = concurrency
        self.part_size = part_size
        self.objects = Bucket(
            bucket,
            where=f"store {self.url!r}",
            endpoint=self.endpoint,
            region=self.region,
            credentials=self._credentials,
            timeout=self.timeout,
            concurrency=concurrency,
            part_size=part_size,
        )
        self.leases = Leases(self.objects, self.lease)
        self.used = BucketLogs(self.objects, self.name("u"))
        self.listing = EntryListing(self.objects, self.name(ENTRIES))

    @property
    def url(self) -> str:
        """Where the store is: ``s3://bucket/prefix`` (and the endpoint, if not AWS's)."""
        text = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return text if self.endpoint is None else f"{text} at {self.endpoint}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url!r}>"

    def name(self, *parts: str) -> str:
        """The object name of `parts` under the prefix."""
        return "/".join(filter(None, (self.prefix, *parts)))

    def record_name(self, key: str, attribute_name: str | None = None) -> str:
        """The object name of a record (or, with no attribute name, of the entry's
        component record)."""
        entry = _naming.encode_name(key)
        if attribute_name is None:
            return self.name(ENTRIES + entry, COMPONENT)
        return self.name(ENTRIES + entry, _naming.encode_name(attribute_name) + RECORD_SUFFIX)

    # -- opening and closing --------------------------------------------------------------------

    @_s3_errors
    def blocking_open(self) -> None:
        marker = self.name(MARKER)
        found = self.objects.get(marker)
        if found is None:
            if not self.create:
                raise ConfigurationError(f"no store at {self.url!r}: it has no {MARKER} marker")
            content = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION}).encode()
            if self.objects.put(marker, content, IfNoneMatch="*") is not None:
                return
            found = self.objects.get(marker)  # made by another process meanwhile
            if found is None:
                raise StorageError(f"store {self.url!r}: its marker vanished as it was made")
        body = found["Body"].read(MAX_JSON)
        try:
            fields = json.loads(body)
        except (ValueError, RecursionError):
            fields = None
        if not isinstance(fields, dict) or fields.get("format") != FORMAT_NAME:
            raise ConfigurationError(f"{self.url!r}: {MARKER} is not an adatastore marker")
        if fields.get("version") != FORMAT_VERSION:
            raise ConfigurationError(
                f"{self.url!r} holds format version {fields.get('version')!r}; this adatastore "
                f"reads version {FORMAT_VERSION}"
            )

    def blocking_close(self) -> None:
        self.objects.close()

    def forget(self) -> None:
        # A forked child: the parent's connections and threads are not ours to use or close.
        self.objects.forget()
        self.leases.forget()

    # -- writing --------------------------------------------------------------------------------
    #
    # A cancelled caller of a write or a delete waits for the requests already sent, then
    # gets its cancellation (`run_to_end`): when it returns, the change is made or not,
    # and nothing is still changing the bucket behind it.

    async def write(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        ending = await run_to_end(
            self.in_thread, self.blocking_write, key, attribute_name, record, component
        )
        ending.unwrap()

    async def write_many(self, records: Sequence[RecordWrite]) -> None:
        (await run_to_end(self.in_thread, self.blocking_write_many, records)).unwrap()

    async def delete(self, key: str, attribute_name: str | None) -> int:
        ending = await run_to_end(self.in_thread, self.blocking_delete, key, attribute_name)
        deleted: int = ending.unwrap()
        return deleted

    async def delete_listed(self, entries: Sequence[Entry]) -> list[Entry]:
        gone: list[Entry] = (
            await run_to_end(self.in_thread, self.blocking_delete_listed, entries)
        ).unwrap()
        return gone

    @_s3_errors
    def blocking_write(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        """PUT the record, then the component record if none is there (If-None-Match: a
        412 means it is). A record is never visible without its component record for
        longer than that second request (see `blocking_delete` for the race with deletes)."""
        name = self.record_name(key, attribute_name)
        size = record_size(record)
        if size > self.part_size:
            self.objects.upload(name, record, size)
        else:
            self.objects.put(name, b"".join(record))
        self.objects.put(self.record_name(key), component.to_json(), IfNoneMatch="*")

    @_s3_errors
    def blocking_write_many(self, records: Sequence[RecordWrite]) -> None:
        """Several records, concurrently (bounded by `concurrency`). Not all or nothing:
        S3 has no transactions; each record is whole or absent."""
        small = [item for item in records if record_size(item[2]) <= self.part_size]
        self.objects.many([functools.partial(self.blocking_write, *item) for item in small])
        for item in records:
            if record_size(item[2]) > self.part_size:
                self.blocking_write(*item)

    # -- reading --------------------------------------------------------------------------------

    @_s3_errors
    def blocking_read(self, key: str, attribute_name: str) -> Buffer | None:
        return self.objects.read(self.record_name(key, attribute_name))

    @_s3_errors
    def blocking_read_many(self, pairs: Sequence[tuple[str, str]]) -> list[Buffer | None]:
        if len(pairs) <= 1:
            return [self.blocking_read(*pair) for pair in pairs]
        return self.objects.many([functools.partial(self.blocking_read, *pair) for pair in pairs])

    @_s3_errors
    def blocking_read_head(self, key: str, attribute_name: str, size: int) -> Buffer | None:
        found = self.objects.get(self.record_name(key, attribute_name), Range=f"bytes=0-{size - 1}")
        return None if found is None else found["Body"].read()

    @_s3_errors
    def blocking_contains(self, key: str, attribute_name: str) -> bool:
        try:
            self.objects.client.head_object(
                Bucket=self.bucket, Key=self.record_name(key, attribute_name)
            )
        except Exception as error:
            if error_code(error) in NOT_FOUND:
                return False
            raise
        return True

    @_s3_errors
    def blocking_contains_many(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        found = self.objects.many(
            [functools.partial(self.blocking_contains, *pair) for pair in pairs]
        )
        return {pair for pair, there in zip(pairs, found, strict=True) if there}

    # -- deleting -------------------------------------------------------------------------------

    @_s3_errors
    def blocking_delete(self, key: str, attribute_name: str | None) -> int:
        """Delete one record (or all); then the component record once no record is left.

        A store racing this delete may add a record at any step: the component record is
        read before it is deleted and put back if a record shows up afterwards."""
        directory = self.name(ENTRIES + _naming.encode_name(key)) + "/"
        names = [item["Key"] for item in self.objects.listing(directory)]
        records = [name for name in names if name.endswith(RECORD_SUFFIX)]
        if attribute_name is not None:
            wanted = self.record_name(key, attribute_name)
            records = [name for name in records if name == wanted]
        self.objects.delete_many(records)
        self._remove_if_empty(directory)
        return len(records)

    @_s3_errors
    def blocking_delete_listed(self, entries: Sequence[Entry]) -> list[Entry]:
        """Each record deleted only while its ETag is the one listed (``If-Match``: the
        check and the delete are one request), then emptied entries' component records."""
        deleted = self.objects.many(
            [functools.partial(self._delete_if_unchanged, entry) for entry in entries]
        )
        gone = [entry for entry, done in zip(entries, deleted, strict=True) if done]
        for key in dict.fromkeys(entry.key for entry in gone):
            self._remove_if_empty(self.name(ENTRIES + _naming.encode_name(key)) + "/")
        return gone

    def _delete_if_unchanged(self, listed: Entry) -> bool:
        if listed.generation is None:
            return False
        name = self.record_name(listed.key, listed.attribute_name)
        try:
            self.objects.client.delete_object(
                Bucket=self.bucket, Key=name, IfMatch=listed.generation
            )
        except Exception as error:
            if error_code(error) in CONFLICT | NOT_FOUND:
                return False  # stored again since it was listed, or gone
            raise self.objects.translate(error) from None
        return True

    def _remove_if_empty(self, directory: str) -> None:
        if any(item["Key"].endswith(RECORD_SUFFIX) for item in self.objects.listing(directory)):
            return
        component = directory + COMPONENT
        found = self.objects.get(component)
        if found is None:
            return
        saved = found["Body"].read(MAX_JSON)
        self.objects.client.delete_object(Bucket=self.bucket, Key=component)
        if any(item["Key"].endswith(RECORD_SUFFIX) for item in self.objects.listing(directory)):
            self.objects.put(component, saved, IfNoneMatch="*")

    # -- read times, for limits ---------------------------------------------------------------

    @_s3_errors
    def blocking_touch_many(self, used: Sequence[Used]) -> None:
        self.used.append(used)

    @_s3_errors
    def blocking_last_used(self) -> dict[tuple[str, str], float]:
        used, logs = self.used.read()
        stored = {item["Key"] for items in self.listing.entry_objects().values() for item in items}
        kept = {pair: when for pair, when in used.items() if self.record_name(*pair) in stored}
        self.used.compact(kept, logs, len(used))
        return kept

    # -- listing (`_listing`) ------------------------------------------------------------------

    @_s3_errors
    def blocking_planted(self) -> list[DamagedEntry]:
        return self.listing.planted()

    @_s3_errors
    def blocking_remove_planted(self, item: DamagedEntry) -> int:
        return self.listing.remove_planted(item)

    @_s3_errors
    def blocking_entries(self) -> list[Entry]:
        return self.listing.entries()

    @_s3_errors
    def blocking_components(self, full_type: str | None) -> list[ComponentRecord]:
        return self.listing.components(full_type)

    # -- locks and clean-up ---------------------------------------------------------------------

    def lock(
        self, key: str, attribute_name: str, timeout: float | None
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        name = self.name(LEASES + _locks.lock_name(key, attribute_name) + ".lease")
        return self.leases.hold(name, timeout)

    @_s3_errors
    def blocking_cleanup(self, older_than: float) -> int:
        """Remove what interrupted work left, older than `older_than` seconds: multipart
        uploads never completed, component records without records, expired leases."""
        now = time.time()
        removed = 0
        for upload in self.objects.uploads(self.name(ENTRIES)):
            if self.objects.upload_age(upload, now) > older_than:
                self.objects.abort(upload)
                removed += 1
        for directory, objects in self.listing.entry_objects().items():
            names = {item["Name"]: item for item in objects}
            if (
                COMPONENT in names
                and not any(n.endswith(RECORD_SUFFIX) for n in names)
                and now - names[COMPONENT]["LastModified"].timestamp() > older_than
            ):
                self._remove_if_empty(directory)
                removed += 1
        under = self.name(LEASES)
        for item in self.objects.listing(under if under.endswith("/") else under + "/"):
            found = self.objects.get(item["Key"])
            if found is None:
                continue
            body = found["Body"].read(4097)
            age = now - item["LastModified"].timestamp()
            if lease_expired(body) and age > older_than:
                self.objects.remove(item["Key"], found["ETag"])
                removed += 1
        return removed

    def spec(self) -> BackendSpec:
        arguments: dict[str, Any] = {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "endpoint": self.endpoint,
            "region": self.region,
            "create": False,
            "lease": self.lease,
            "timeout": self.timeout,
            "concurrency": self.concurrency,
            "part_size": self.part_size,
        }
        access, secret, token = self._credentials
        if access is not None:  # given to this store: workers need them too
            arguments.update(access_key_id=access, secret_access_key=secret, session_token=token)
        return BackendSpec(ObjectBackend, arguments, self.url.split(" at ")[0])
