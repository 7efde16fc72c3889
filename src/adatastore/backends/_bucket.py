"""One S3 bucket through botocore: the requests the object-store back-end makes.

A `Bucket` holds a botocore client (thread-safe, made at first use, dropped in a forked
child) and two thread pools (whole requests of bulk calls; the parts of large ones, apart
so that a request waiting for its parts never starves them). It knows objects, not
records: GET, PUT (conditional), list, delete, multipart uploads, and whole-object reads
by concurrent ranges. It is also the `adatastore._storage.leases.ConditionalObjects` the leases
need. Its errors are botocore's until `translate` makes them ours.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import mmap
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .._runtime import forks as _forks
from ..errors import ConfigurationError, StorageError
from ..serializers import Buffer

if TYPE_CHECKING:
    from botocore.client import BaseClient

__all__ = [
    "CONFLICT",
    "MIN_PART_SIZE",
    "NOT_FOUND",
    "PART_SIZE",
    "Bucket",
    "environment_endpoint",
    "environment_region",
    "error_code",
    "gather",
    "record_size",
]

T = TypeVar("T")

PART_SIZE = 128 << 20
"""The default `part_size`: records larger than this go up as multipart uploads and come
down as ranged GETs of this size, several at a time; smaller ones in one request. Not
smaller: on the test server a 100 MB array took 2.6x longer to store in 16 MiB parts than
in one PUT, and 1.5x longer to read in 64 MiB ranges (benchmarks/objects.py); S3 itself
needs parts above 5 GB, and gains from them on links faster than one connection."""
MIN_PART_SIZE = 5 << 20  # S3's smallest part (but the last)
_DIRECT = 1 << 20  # bodies from this size are read straight into their buffer
_PARTS_IN_FLIGHT = 4  # parts of one upload being sent at once (each a copy in memory)
_REFUSED = {  # error codes that mean the credentials, not the request, are wrong
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
}
NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


def environment_endpoint() -> str | None:
    """The endpoint the AWS environment names (``AWS_ENDPOINT_URL_S3``, then
    ``AWS_ENDPOINT_URL``), or None: AWS's own."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def environment_region() -> str:
    """The region the AWS environment names (``AWS_REGION``, then ``AWS_DEFAULT_REGION``),
    else us-east-1."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def error_code(error: BaseException) -> str | None:
    """The S3 error code of a botocore `ClientError`, else None."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return None if code is None else str(code)
    return None


class Bucket:
    """One bucket (see the module docstring); `where` names the store in messages."""

    def __init__(
        self,
        name: str,
        *,
        where: str,
        endpoint: str | None,
        region: str,
        credentials: tuple[str | None, str | None, str | None],
        timeout: float,
        concurrency: int,
        part_size: int,
    ) -> None:
        self.name = name
        self.where = where
        self.endpoint = endpoint
        self.region = region
        self._credentials = credentials
        self.timeout = timeout
        self.concurrency = concurrency
        self.part_size = part_size
        self._client: BaseClient | None = None
        self._pools: (
            tuple[concurrent.futures.ThreadPoolExecutor, concurrent.futures.ThreadPoolExecutor]
            | None
        ) = None
        self._setup = threading.Lock()

    @property
    def client(self) -> BaseClient:
        """The botocore client, made at first use."""
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
        session.register_component("data_loader", _shared_loader(session))
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
            raise ConfigurationError(f"{self.where}: {error}") from None

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

    def close(self) -> None:
        pools, self._pools = self._pools, None
        if pools is not None:
            _shut_down(pools)
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def forget(self) -> None:
        """In a forked child: the parent's connections and threads are not ours."""
        _forks.remember((self._client, self._pools))
        self._client = None
        self._pools = None
        self._setup = threading.Lock()

    def translate(self, error: BaseException) -> Exception:
        """A library error as ours: what is wrong, where; never the credentials."""
        from botocore import exceptions as boto

        if isinstance(error, ConfigurationError | StorageError):
            return error
        code = error_code(error)
        where = self.where
        if code == "NoSuchBucket":
            return ConfigurationError(f"{where}: the bucket {self.name!r} does not exist")
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

    def get(self, name: str, **options: Any) -> dict[str, Any] | None:
        try:
            return self.client.get_object(Bucket=self.name, Key=name, **options)  # type: ignore[no-any-return]
        except Exception as error:
            if error_code(error) in NOT_FOUND:
                return None
            raise

    def put(self, name: str, body: Buffer, **conditions: str) -> str | None:
        """PUT `body`; its ETag, or None when a condition (If-None-Match, If-Match) failed."""
        try:
            response = self.client.put_object(
                Bucket=self.name, Key=name, Body=bytes(body), **conditions
            )
        except Exception as error:
            if error_code(error) in CONFLICT:
                return None
            raise
        return str(response["ETag"])

    def listing(self, under: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.name, Prefix=under):
            yield from page.get("Contents", ())

    def delete_many(self, names: Sequence[str]) -> None:
        for start in range(0, len(names), 1000):
            batch = [{"Key": name} for name in names[start : start + 1000]]
            self.client.delete_objects(Bucket=self.name, Delete={"Objects": batch, "Quiet": True})

    def read(self, name: str) -> Buffer | None:
        """The whole object: one GET; for an object larger than `part_size`, its first
        part from that GET and the others by ranged GETs sent concurrently, each
        conditional on the first one's ETag (an object replaced meanwhile is read again,
        never mixed). One plain GET, not a ranged one, for what fits in a part: the test
        server answers ranges 1.2x slower, and most records are small."""
        for _ in range(5):
            first = self.get(name)
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
            if all(gather(self.pools[1], tasks)):
                return data
        raise StorageError(f"{self.where}: {name!r} kept changing while being read")

    def _read_range(self, name: str, data: memoryview, start: int, etag: str) -> bool:
        end = min(start + self.part_size, len(data))
        try:
            found = self.get(name, Range=f"bytes={start}-{end - 1}", IfMatch=etag)
        except Exception as error:
            if error_code(error) in CONFLICT:
                return False
            raise
        if found is None:
            return False
        if int(found["ContentLength"]) != end - start:
            return False
        return _read_into(found["Body"], memoryview(data)[start:end])

    def upload(self, name: str, record: Sequence[Buffer], size: int) -> None:
        """A multipart upload, `part_size` at a time, at most `_PARTS_IN_FLIGHT` parts
        being sent (each is a copy of its bytes: memory stays bounded for any record);
        aborted on failure (and, if this process dies, removed later by `cleanup`)."""
        client = self.client
        upload = client.create_multipart_upload(Bucket=self.name, Key=name)["UploadId"]
        sending: list[concurrent.futures.Future[Any]] = []
        try:
            etags = []
            for number, part in enumerate(_parts(record, self.part_size), start=1):
                if len(sending) >= _PARTS_IN_FLIGHT:
                    etags.append(sending.pop(0).result()["ETag"])
                sending.append(
                    self.pools[1].submit(
                        client.upload_part,
                        Bucket=self.name,
                        Key=name,
                        UploadId=upload,
                        PartNumber=number,
                        Body=part,
                    )
                )
            etags += [future.result()["ETag"] for future in sending]
            client.complete_multipart_upload(
                Bucket=self.name,
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
            concurrent.futures.wait(sending)  # no part still going up after the abort
            with contextlib.suppress(Exception):
                client.abort_multipart_upload(Bucket=self.name, Key=name, UploadId=upload)
            raise

    def many(self, tasks: Sequence[Callable[[], T]]) -> list[T]:
        """Run whole requests concurrently (at most `concurrency`); results in order."""
        return gather(self.pools[0], tasks)

    def uploads(self, prefix: str) -> Iterator[dict[str, Any]]:
        """The multipart uploads under `prefix` not completed (nor aborted)."""
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
            yield from page.get("Uploads", ())

    def abort(self, upload: dict[str, Any]) -> None:
        self.client.abort_multipart_upload(
            Bucket=self.name, Key=upload["Key"], UploadId=upload["UploadId"]
        )

    def upload_age(self, upload: dict[str, Any], now: float) -> float:
        """Seconds since a multipart upload last moved: since its newest part, or its start
        (an upload started long ago may still be sending parts; and moto reports a fixed
        start date)."""
        age: float = now - upload["Initiated"].timestamp()
        if age <= 0:
            return age
        parts = self.client.list_parts(
            Bucket=self.name, Key=upload["Key"], UploadId=upload["UploadId"]
        ).get("Parts", ())
        newest: float | None = max(
            (part["LastModified"].timestamp() for part in parts), default=None
        )
        return age if newest is None else min(age, now - newest)

    # -- the conditional requests of `adatastore._storage.leases` -------------------------------

    def create(self, name: str, body: bytes) -> str | None:
        etag: str | None = self._checked(self.put, name, body, IfNoneMatch="*")
        return etag

    def replace(self, name: str, body: bytes, etag: str) -> str | None:
        new: str | None = self._checked(self.put, name, body, IfMatch=etag)
        return new

    def fetch(self, name: str) -> tuple[bytes, str] | None:
        found = self._checked(self.get, name)
        if found is None:
            return None
        return found["Body"].read(4097), str(found["ETag"])

    def remove(self, name: str, etag: str) -> None:
        try:
            self.client.delete_object(Bucket=self.name, Key=name, IfMatch=etag)
        except Exception as error:
            if error_code(error) not in CONFLICT | NOT_FOUND:
                raise self.translate(error) from None

    def _checked(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except Exception as error:
            raise self.translate(error) from None


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


_loader: Any = None
_loader_made = threading.Lock()


def _shared_loader(session: Any) -> Any:
    """botocore's loader of service models, one per process: a fresh session parses S3's
    JSON models again (187 ms per client measured here, 22 ms with the loader shared), and
    every store made a session of its own. The loader only reads files and caches what it
    parsed; sessions stay one per store, so each resolves its own credentials."""
    global _loader
    with _loader_made:
        if _loader is None:
            _loader = session.get_component("data_loader")
        return _loader


def record_size(record: Sequence[Buffer]) -> int:
    return sum(memoryview(part).nbytes for part in record)


def gather(
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


def _shut_down(
    pools: tuple[concurrent.futures.ThreadPoolExecutor, concurrent.futures.ThreadPoolExecutor],
) -> None:
    for pool in pools:
        pool.shutdown(wait=False)
