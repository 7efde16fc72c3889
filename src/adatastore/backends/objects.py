"""The object-store back-end: records as objects in an S3-compatible bucket.

Layout under ``s3://<bucket>/<prefix>/``::

    .adatastore                          marker: format name and version
    e/<encoded key>/component.json       the component's type, version, parameters, inputs
    e/<encoded key>/<encoded name>.rec   one object per record
    l/<lock name>.lease                  single-flight leases (`adatastore._leases`)

Every write of a record is one PUT (or one completed multipart upload), which S3 makes
visible whole or not at all: readers see the old record or the new one, never a mix,
even when the writer is killed. Reads of large records are ranged GETs issued
concurrently, each conditional on the first one's ETag, so a record replaced mid-read is
read again rather than torn. Names are encoded as the files back-end encodes them
(`adatastore._naming`): nothing a user passes can reach outside the prefix.

The client is botocore's (thread-safe), called from worker threads: the back-end is a
`ThreadedBackend`, so one code path serves asyncio, trio and the blocking API (which calls
it in the caller's thread). Measured against obstore (the Rust ``object_store``, native
asyncio) and aiobotocore on the same server (``benchmarks/s3_clients.py``): obstore spends
3x less client CPU per small request, but its tokio runtime hangs every forked child of a
process that used it (fork is how ``multiprocessing`` starts workers on Linux before
Python 3.14), it runs on asyncio only, and it cannot list or abort multipart uploads
(what `cleanup` needs); botocore in threads costs the same CPU as aiobotocore and has
none of those limits.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import mmap
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from .. import _locks, _naming, _record
from .._leases import Leases, lease_expired
from .._waiting import run_to_end
from ..backend import BackendSpec, RecordWrite, ThreadedBackend
from ..errors import ConfigurationError, StorageError
from ..keygenerators import KeyGenerator
from ..records import ComponentRecord, Entry
from ..serializers import Buffer, Serializer
from ..signing import SigningKey
from ..store import AsyncDataStore
from ..sync import SyncDataStore

if TYPE_CHECKING:
    from botocore.client import BaseClient

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "AsyncObjectDataStore",
    "ObjectBackend",
    "ObjectDataStore",
]

FORMAT_NAME = "adatastore-objects"
FORMAT_VERSION = 1
MARKER = ".adatastore"
ENTRIES = "e/"
LEASES = "l/"
COMPONENT = "component.json"
RECORD_SUFFIX = ".rec"
PART_SIZE = 128 << 20
"""The default `part_size`: records larger than this go up as multipart uploads and come
down as ranged GETs of this size, several at a time; smaller ones in one request. Not
smaller: on the test server a 100 MB array took 2.6x longer to store in 16 MiB parts than
in one PUT, and 1.5x longer to read in 64 MiB ranges (benchmarks/objects.py); S3 itself
needs parts above 5 GB, and gains from them on links faster than one connection."""
MIN_PART_SIZE = 5 << 20  # S3's smallest part (but the last)
_DIRECT = 1 << 20  # bodies from this size are read straight into their buffer
_MAX_JSON = 1 << 26  # a component.json or marker larger than this is not ours
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]\Z")
_REFUSED = {  # error codes that mean the credentials, not the request, are wrong
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
}
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}

P = ParamSpec("P")
T = TypeVar("T")


def _environment(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _s3_errors(
    method: Callable[Concatenate[ObjectBackend, P], T],
) -> Callable[Concatenate[ObjectBackend, P], T]:
    """botocore's errors as `ConfigurationError`/`StorageError` naming the store (and
    never the credentials)."""

    def translated(self: ObjectBackend, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(self, *args, **kwargs)
        except Exception as error:
            ours = self.translate(error)
            if ours is error:
                raise
            raise ours from None

    functools.update_wrapper(translated, method)
    return translated


def _code(error: BaseException) -> str | None:
    """The S3 error code of a botocore `ClientError`, else None."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return None if code is None else str(code)
    return None


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
        self.endpoint = endpoint or _environment("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        self.region = region or _environment("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
        self._credentials = (access_key_id, secret_access_key, session_token)
        self.create = create
        self.lease = float(lease)
        self.timeout = float(timeout)
        self.concurrency = concurrency
        self.part_size = part_size
        self._client: BaseClient | None = None
        self._pools: (
            tuple[concurrent.futures.ThreadPoolExecutor, concurrent.futures.ThreadPoolExecutor]
            | None
        ) = None
        self._setup = threading.Lock()
        self.leases = Leases(_LeaseObjects(self), self.lease)

    @property
    def url(self) -> str:
        """Where the store is: ``s3://bucket/prefix`` (and the endpoint, if not AWS's)."""
        text = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return text if self.endpoint is None else f"{text} at {self.endpoint}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url!r}>"

    # -- the client -----------------------------------------------------------------------------

    @property
    def client(self) -> BaseClient:
        if self._client is None:
            with self._setup:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _make_client(self) -> BaseClient:
        try:
            import botocore.config
            import botocore.session
        except ImportError as error:
            raise ConfigurationError(
                f"the s3:// back-end needs botocore (pip install 'adatastore[s3]'): {error}"
            ) from None
        session = botocore.session.get_session()
        # no instance-metadata probing for seconds when no credentials are configured
        session.set_config_variable("metadata_service_num_attempts", 1)
        session.set_config_variable("metadata_service_timeout", 1)
        access, secret, token = self._credentials
        config = botocore.config.Config(
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=2 * self.concurrency + 4,
            # no checksum trailers: servers other than AWS's (and moto) may not take them
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            return session.create_client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=self.region,
                aws_access_key_id=access,
                aws_secret_access_key=secret,
                aws_session_token=token,
                config=config,
            )
        except ValueError as error:  # a malformed endpoint
            raise ConfigurationError(f"store {self.url!r}: {error}") from None

    @property
    def pools(
        self,
    ) -> tuple[concurrent.futures.ThreadPoolExecutor, concurrent.futures.ThreadPoolExecutor]:
        """Threads for whole requests (bulk reads and writes) and for the parts of large
        ones: two pools, so a request waiting for its parts never starves them."""
        if self._pools is None:
            with self._setup:
                if self._pools is None:
                    self._pools = (
                        concurrent.futures.ThreadPoolExecutor(
                            self.concurrency, thread_name_prefix="adatastore-s3"
                        ),
                        concurrent.futures.ThreadPoolExecutor(
                            self.concurrency, thread_name_prefix="adatastore-s3-parts"
                        ),
                    )
                    weakref.finalize(self, _shut_down, self._pools).atexit = False
        return self._pools

    def translate(self, error: BaseException) -> Exception:
        """A library error as ours: what is wrong, where; never the credentials."""
        from botocore import exceptions as boto

        if isinstance(error, ConfigurationError | StorageError):
            return error
        code = _code(error)
        where = f"store {self.url!r}"
        if code == "NoSuchBucket":
            return ConfigurationError(f"{where}: the bucket {self.bucket!r} does not exist")
        if code in _REFUSED:
            return ConfigurationError(
                f"{where}: the server refused the credentials or their rights ({code}); "
                "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN"
            )
        if isinstance(error, boto.NoCredentialsError | boto.PartialCredentialsError):
            return ConfigurationError(
                f"{where}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), or an AWS "
                "profile"
            )
        if isinstance(error, boto.EndpointConnectionError | boto.ConnectTimeoutError):
            return StorageError(
                f"{where}: cannot reach the endpoint {self.endpoint or 'of AWS'} "
                f"(within {self.timeout:g} s, 3 attempts)"
            )
        if isinstance(error, boto.ReadTimeoutError):
            return StorageError(f"{where}: the server did not answer within {self.timeout:g} s")
        if isinstance(error, boto.ClientError):
            return StorageError(f"{where}: {error}")
        if isinstance(error, boto.BotoCoreError | OSError):
            return StorageError(f"{where}: {type(error).__name__}: {error}")
        return error if isinstance(error, Exception) else StorageError(str(error))

    def _key(self, *parts: str) -> str:
        return "/".join(filter(None, (self.prefix, *parts)))

    def _entry_key(self, key: str, attribute_name: str | None = None) -> str:
        """The object name of a record (or, with no attribute name, of the entry's
        component record)."""
        entry = _naming.encode_name(key)
        if attribute_name is None:
            return self._key(ENTRIES + entry, COMPONENT)
        return self._key(ENTRIES + entry, _naming.encode_name(attribute_name) + RECORD_SUFFIX)

    # -- primitive requests ---------------------------------------------------------------------

    def _get(self, name: str, **options: Any) -> dict[str, Any] | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=name, **options)  # type: ignore[no-any-return]
        except Exception as error:
            if _code(error) in _NOT_FOUND:
                return None
            raise

    def _put(self, name: str, body: Buffer, **conditions: str) -> str | None:
        """PUT `body`; its ETag, or None when a condition (If-None-Match, If-Match) failed."""
        try:
            response = self.client.put_object(
                Bucket=self.bucket, Key=name, Body=bytes(body), **conditions
            )
        except Exception as error:
            if _code(error) in _CONFLICT:
                return None
            raise
        return str(response["ETag"])

    def _list(self, under: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=under):
            yield from page.get("Contents", ())

    def _delete_objects(self, names: Sequence[str]) -> None:
        for start in range(0, len(names), 1000):
            batch = [{"Key": name} for name in names[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    # -- opening and closing --------------------------------------------------------------------

    @_s3_errors
    def blocking_open(self) -> None:
        marker = self._key(MARKER)
        found = self._get(marker)
        if found is None:
            if not self.create:
                raise ConfigurationError(f"no store at {self.url!r}: it has no {MARKER} marker")
            content = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION}).encode()
            if self._put(marker, content, IfNoneMatch="*") is not None:
                return
            found = self._get(marker)  # made by another process meanwhile
            if found is None:
                raise StorageError(f"store {self.url!r}: its marker vanished as it was made")
        body = found["Body"].read(_MAX_JSON)
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
        pools, self._pools = self._pools, None
        if pools is not None:
            _shut_down(pools)
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def forget(self) -> None:
        # A forked child: the parent's connections and threads are not ours to use or close.
        from .. import _forks

        _forks.remember((self._client, self._pools))
        self._client = None
        self._pools = None
        self._setup = threading.Lock()
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

    @_s3_errors
    def blocking_write(
        self, key: str, attribute_name: str, record: Sequence[Buffer], component: ComponentRecord
    ) -> None:
        """PUT the record, then the component record if none is there (If-None-Match: a
        412 means it is). A record is never visible without its component record for
        longer than that second request (see `blocking_delete` for the race with deletes)."""
        name = self._entry_key(key, attribute_name)
        size = sum(memoryview(part).nbytes for part in record)
        if size > self.part_size:
            self._upload(name, record, size)
        else:
            self._put(name, b"".join(record))
        self._put(self._entry_key(key), component.to_json(), IfNoneMatch="*")

    def _upload(self, name: str, record: Sequence[Buffer], size: int) -> None:
        """A multipart upload, `part_size` at a time, the parts sent concurrently; aborted
        on failure (and, if this process dies, removed later by `cleanup`)."""
        client = self.client
        upload = client.create_multipart_upload(Bucket=self.bucket, Key=name)["UploadId"]
        try:
            futures = [
                self.pools[1].submit(
                    client.upload_part,
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload,
                    PartNumber=number,
                    Body=part,
                )
                for number, part in enumerate(_parts(record, self.part_size), start=1)
            ]
            etags = [future.result()["ETag"] for future in futures]
            client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=name,
                UploadId=upload,
                MultipartUpload={
                    "Parts": [
                        {"ETag": etag, "PartNumber": number}
                        for number, etag in enumerate(etags, start=1)
                    ]
                },
            )
        except BaseException:
            with contextlib.suppress(Exception):
                client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload)
            raise

    @_s3_errors
    def blocking_write_many(self, records: Sequence[RecordWrite]) -> None:
        """Several records, concurrently (bounded by `concurrency`). Not all or nothing:
        S3 has no transactions; each record is whole or absent."""
        small = [item for item in records if _size(item[2]) <= self.part_size]
        _gather(self.pools[0], [functools.partial(self.blocking_write, *item) for item in small])
        for item in records:
            if _size(item[2]) > self.part_size:
                self.blocking_write(*item)

    # -- reading --------------------------------------------------------------------------------

    @_s3_errors
    def blocking_read(self, key: str, attribute_name: str) -> Buffer | None:
        return self._read(self._entry_key(key, attribute_name))

    def _read(self, name: str) -> Buffer | None:
        """The whole object: one GET; for an object larger than `part_size`, its first
        part from that GET and the others by ranged GETs sent concurrently, each
        conditional on the first one's ETag (an object replaced meanwhile is read again,
        never mixed). One plain GET, not a ranged one, for what fits in a part: the test
        server answers ranges 1.2x slower, and most records are small."""
        for _ in range(5):
            first = self._get(name)
            if first is None:
                return None
            total = int(first["ContentLength"])
            data = _buffer(total)  # writable: arrays rebuilt from it belong to the caller
            head = min(total, self.part_size)
            if not _read_into(first["Body"], memoryview(data)[:head], whole=head == total):
                continue
            if head == total:
                return data
            ranges = range(head, total, self.part_size)
            tasks = [
                functools.partial(self._read_range, name, data, start, first["ETag"])
                for start in ranges
            ]
            if all(_gather(self.pools[1], tasks)):
                return data
        raise StorageError(f"store {self.url!r}: {name!r} kept changing while being read")

    def _read_range(self, name: str, data: memoryview, start: int, etag: str) -> bool:
        end = min(start + self.part_size, len(data))
        try:
            found = self._get(name, Range=f"bytes={start}-{end - 1}", IfMatch=etag)
        except Exception as error:
            if _code(error) in _CONFLICT:
                return False
            raise
        if found is None:
            return False
        if int(found["ContentLength"]) != end - start:
            return False
        return _read_into(found["Body"], memoryview(data)[start:end])

    @_s3_errors
    def blocking_read_many(self, pairs: Sequence[tuple[str, str]]) -> list[Buffer | None]:
        if len(pairs) <= 1:
            return [self.blocking_read(*pair) for pair in pairs]
        return _gather(
            self.pools[0], [functools.partial(self.blocking_read, *pair) for pair in pairs]
        )

    @_s3_errors
    def blocking_read_head(self, key: str, attribute_name: str, size: int) -> Buffer | None:
        found = self._get(self._entry_key(key, attribute_name), Range=f"bytes=0-{size - 1}")
        return None if found is None else found["Body"].read()

    @_s3_errors
    def blocking_contains(self, key: str, attribute_name: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._entry_key(key, attribute_name))
        except Exception as error:
            if _code(error) in _NOT_FOUND:
                return False
            raise
        return True

    @_s3_errors
    def blocking_contains_many(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        found = _gather(
            self.pools[0], [functools.partial(self.blocking_contains, *pair) for pair in pairs]
        )
        return {pair for pair, there in zip(pairs, found, strict=True) if there}

    # -- deleting -------------------------------------------------------------------------------

    @_s3_errors
    def blocking_delete(self, key: str, attribute_name: str | None) -> int:
        """Delete one record (or all); then the component record once no record is left.

        A store racing this delete may add a record at any step: the component record is
        read before it is deleted and put back if a record shows up afterwards."""
        directory = self._key(ENTRIES + _naming.encode_name(key)) + "/"
        names = [item["Key"] for item in self._list(directory)]
        records = [name for name in names if name.endswith(RECORD_SUFFIX)]
        if attribute_name is not None:
            wanted = self._entry_key(key, attribute_name)
            records = [name for name in records if name == wanted]
        self._delete_objects(records)
        self._remove_if_empty(directory)
        return len(records)

    def _remove_if_empty(self, directory: str) -> None:
        if any(item["Key"].endswith(RECORD_SUFFIX) for item in self._list(directory)):
            return
        component = directory + COMPONENT
        found = self._get(component)
        if found is None:
            return
        saved = found["Body"].read(_MAX_JSON)
        self.client.delete_object(Bucket=self.bucket, Key=component)
        if any(item["Key"].endswith(RECORD_SUFFIX) for item in self._list(directory)):
            self._put(component, saved, IfNoneMatch="*")

    # -- listing --------------------------------------------------------------------------------

    def _entry_objects(self) -> dict[str, list[dict[str, Any]]]:
        """The objects under ``e/``, by entry directory (``<prefix>/e/<encoded key>/``)."""
        under = self._key(ENTRIES)
        under = under if under.endswith("/") else under + "/"
        found: dict[str, list[dict[str, Any]]] = {}
        for item in self._list(under):
            rest = item["Key"][len(under) :]
            entry, slash, name = rest.partition("/")
            if slash and name and "/" not in name:
                found.setdefault(under + entry + "/", []).append({**item, "Name": name})
        return found

    def _component(self, directory: str) -> ComponentRecord | None:
        found = self._get(directory + COMPONENT)
        if found is None:
            return None
        data = found["Body"].read(_MAX_JSON + 1)
        try:
            if len(data) > _MAX_JSON:
                raise ValueError("too large")  # noqa: TRY301 - the same as unparsable
            return ComponentRecord.from_json(data)
        except ValueError:  # damaged or planted: verify reports its records
            encoded = directory.rstrip("/").rpartition("/")[2]
            return ComponentRecord(_decode_or(encoded), "", "", None, ())

    @_s3_errors
    def blocking_entries(self) -> list[Entry]:
        directories = {
            directory: objects
            for directory, objects in self._entry_objects().items()
            if any(item["Name"] == COMPONENT for item in objects)
        }
        components = _gather(
            self.pools[0],
            [functools.partial(self._component, directory) for directory in directories],
        )
        entries = []
        for (directory, objects), component in zip(directories.items(), components, strict=True):
            if component is None:
                continue
            for item in objects:
                name = item["Name"]
                if not name.endswith(RECORD_SUFFIX) or name.startswith("."):
                    continue
                encoded = name[: -len(RECORD_SUFFIX)]
                attribute = self._attribute_name(directory + name, encoded)
                if attribute is None:
                    continue
                entries.append(
                    Entry(
                        key=component.key,
                        attribute_name=attribute,
                        full_type=component.full_type,
                        version=component.version,
                        size=int(item["Size"]),
                        stored_at=_utc(item["LastModified"]),
                    )
                )
        return entries

    def _attribute_name(self, name: str, encoded: str) -> str | None:
        """A record's attribute name: decoded from its object name, or, for a shortened
        name, from the record's header (None when it is gone meanwhile)."""
        if not _naming.is_shortened(encoded):
            return _decode_or(encoded)
        found = self._get(name, Range="bytes=0-4095")
        if found is None:
            return None
        try:
            header, _ = _record.read_header(found["Body"].read())
        except _record.DamagedRecord:
            return encoded
        return header.attribute_name

    @_s3_errors
    def blocking_components(self, full_type: str | None) -> list[ComponentRecord]:
        directories = list(self._entry_objects())
        found = _gather(
            self.pools[0],
            [functools.partial(self._component, directory) for directory in directories],
        )
        return [
            record
            for record in found
            if record is not None
            and record.full_type
            and (full_type is None or record.full_type == full_type)
        ]

    # -- locks and clean-up ---------------------------------------------------------------------

    def lock(
        self, key: str, attribute_name: str, timeout: float | None
    ) -> contextlib.AbstractAsyncContextManager[bool]:
        name = self._key(LEASES + _locks.lock_name(key, attribute_name) + ".lease")
        return self.leases.hold(name, timeout)

    @_s3_errors
    def blocking_cleanup(self, older_than: float) -> int:
        """Remove what interrupted work left, older than `older_than` seconds: multipart
        uploads never completed, component records without records, expired leases."""
        now = time.time()
        removed = 0
        client = self.client
        paginator = client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(ENTRIES)):
            for upload in page.get("Uploads", ()):
                if self._upload_age(upload, now) > older_than:
                    client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    removed += 1
        for directory, objects in self._entry_objects().items():
            names = {item["Name"]: item for item in objects}
            if (
                COMPONENT in names
                and not any(n.endswith(RECORD_SUFFIX) for n in names)
                and now - names[COMPONENT]["LastModified"].timestamp() > older_than
            ):
                self._remove_if_empty(directory)
                removed += 1
        under = self._key(LEASES)
        for item in self._list(under if under.endswith("/") else under + "/"):
            found = self._get(item["Key"])
            if found is None:
                continue
            body = found["Body"].read(4097)
            age = now - item["LastModified"].timestamp()
            if lease_expired(body) and age > older_than:
                self.leases.objects.remove(item["Key"], found["ETag"])
                removed += 1
        return removed

    def _upload_age(self, upload: dict[str, Any], now: float) -> float:
        """Seconds since a multipart upload last moved: since its newest part, or its start
        (an upload started long ago may still be sending parts; and moto reports a fixed
        start date)."""
        age: float = now - upload["Initiated"].timestamp()
        if age <= 0:
            return age
        parts = self.client.list_parts(
            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        ).get("Parts", ())
        newest: float | None = max(
            (part["LastModified"].timestamp() for part in parts), default=None
        )
        return age if newest is None else min(age, now - newest)

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


class _LeaseObjects:
    """The conditional requests `Leases` needs, on a back-end's bucket."""

    def __init__(self, backend: ObjectBackend) -> None:
        self.backend = weakref.proxy(backend)

    def create(self, name: str, body: bytes) -> str | None:
        etag: str | None = self._checked(self.backend._put, name, body, IfNoneMatch="*")
        return etag

    def replace(self, name: str, body: bytes, etag: str) -> str | None:
        new: str | None = self._checked(self.backend._put, name, body, IfMatch=etag)
        return new

    def fetch(self, name: str) -> tuple[bytes, str] | None:
        found = self._checked(self.backend._get, name)
        if found is None:
            return None
        return found["Body"].read(4097), str(found["ETag"])

    def remove(self, name: str, etag: str) -> None:
        try:
            self.backend.client.delete_object(Bucket=self.backend.bucket, Key=name, IfMatch=etag)
        except Exception as error:
            if _code(error) not in _CONFLICT | _NOT_FOUND:
                raise self.backend.translate(error) from None

    def _checked(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except Exception as error:
            raise self.backend.translate(error) from None


def _parts(record: Sequence[Buffer], size: int) -> Iterator[bytes]:
    """The record's bytes in pieces of `size` (the last one shorter)."""
    views = [memoryview(part).cast("B") for part in record]
    pending: list[memoryview] = []
    filled = 0
    for view in views:
        while len(view):
            take = min(len(view), size - filled)
            pending.append(view[:take])
            filled += take
            view = view[take:]
            if filled == size:
                yield b"".join(pending)
                pending, filled = [], 0
    if pending:
        yield b"".join(pending)


def _buffer(size: int) -> memoryview:
    """A writable buffer of `size` bytes; a large one as anonymous memory, whose pages the
    kernel provides (zeroed) as they are first written, where a bytearray would be zeroed
    by a memset first: 30 ms less for 100 MB here."""
    if size < _DIRECT:
        return memoryview(bytearray(size))
    return memoryview(mmap.mmap(-1, size))


def _read_into(body: Any, view: memoryview, *, whole: bool = True) -> bool:
    """Read a response body into `view`; whether it filled it (and, when `whole`, the body
    ended there). The body is closed when it is not read to its end.

    Large bodies are read straight from the socket into `view` (http.client's
    ``readinto``): urllib3's ``readinto`` reads into a new bytes object and copies, which
    made a 100 MB retrieve 1.7x slower than a plain GET here. That connection is then
    closed, not reused; small bodies go through urllib3 and keep their connection."""
    raw = getattr(body, "_raw_stream", None)
    stream = getattr(raw, "_fp", None)  # http.client's response under urllib3's
    if len(view) < _DIRECT or stream is None or not hasattr(stream, "readinto"):
        chunk = body.read(len(view))
        if len(chunk) != len(view):
            return False
        view[:] = chunk
        if not whole:
            body.close()
        return True
    try:
        filled = 0
        while filled < len(view):
            count = stream.readinto(view[filled:])
            if not count:
                return False
            filled += count
        return not whole or not stream.read(1)
    finally:
        body.close()


def _size(record: Sequence[Buffer]) -> int:
    return sum(memoryview(part).nbytes for part in record)


def _gather(
    pool: concurrent.futures.ThreadPoolExecutor, tasks: Sequence[Callable[[], T]]
) -> list[T]:
    """Run `tasks` in `pool`; their results in order (the first error raised, after all
    of them have ended: none is left running behind the caller)."""
    if len(tasks) <= 1:
        return [task() for task in tasks]
    futures = [pool.submit(task) for task in tasks]
    concurrent.futures.wait(futures)
    return [future.result() for future in futures]


def _total_size(content_range: str | None, length: int) -> int:
    """The whole object's size from a ``bytes a-b/total`` Content-Range."""
    if not content_range or "/" not in content_range:
        return length
    total = content_range.rpartition("/")[2]
    return int(total) if total.isdigit() else length


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _decode_or(encoded: str) -> str:
    try:
        return _naming.decode_name(encoded)
    except ValueError:
        return encoded


def _shut_down(
    pools: tuple[concurrent.futures.ThreadPoolExecutor, concurrent.futures.ThreadPoolExecutor],
) -> None:
    for pool in pools:
        pool.shutdown(wait=False)


class AsyncObjectDataStore(AsyncDataStore):
    """Entries as objects in an S3-compatible bucket: shared by every machine that can
    reach it, with cross-machine single-flight locks (leases) and no database.

    ``AsyncObjectDataStore("bucket", "prefix", endpoint="http://127.0.0.1:9000")``, or
    ``open_store("s3://bucket/prefix?endpoint=...")``. Credentials, region and endpoint
    come from the arguments or from the AWS environment (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``,
    ``AWS_ENDPOINT_URL``) and profiles, as botocore finds them. `lease` is how long a
    computing process keeps its single-flight lock without renewing it (it renews every
    third of it): how long others wait after it dies. `timeout` bounds each request
    (3 attempts). `concurrency` bounds the requests of one bulk call. Records larger
    than `part_size` bytes (128 MiB) travel in parts of that size, several at a time.
    """

    backend: ObjectBackend

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        key_generator: KeyGenerator | None = None,
        serializer: Serializer | None = None,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        lease: float = 60.0,
        timeout: float = 10.0,
        concurrency: int = 32,
        part_size: int = PART_SIZE,
        signing_key: SigningKey | None = None,
        verify_on_read: bool = True,
        create: bool = True,
    ) -> None:
        super().__init__(
            ObjectBackend(
                bucket,
                prefix,
                endpoint=endpoint,
                region=region,
                access_key_id=access_key_id,
                secret_access_key=secret_access_key,
                session_token=session_token,
                create=create,
                lease=lease,
                timeout=timeout,
                concurrency=concurrency,
                part_size=part_size,
            ),
            key_generator=key_generator,
            serializer=serializer,
            signing_key=signing_key,
            verify_on_read=verify_on_read,
        )

    @property
    def url(self) -> str:
        """``s3://bucket/prefix`` (and the endpoint when it is not AWS's)."""
        return self.backend.url

    def __repr__(self) -> str:
        state = " closed" if self.lifecycle.closed else ""
        return f"<{type(self).__name__} {self.url!r}{state}>"


class ObjectDataStore(SyncDataStore[AsyncObjectDataStore]):
    """Blocking twin of `AsyncObjectDataStore` (same arguments)."""

    def __init__(self, bucket: str, prefix: str = "", *args: Any, **options: Any) -> None:
        super().__init__(AsyncObjectDataStore(bucket, prefix, *args, **options))

    @property
    def url(self) -> str:
        return self.async_store.url
