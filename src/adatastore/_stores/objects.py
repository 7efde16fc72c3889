"""`AsyncObjectDataStore` and `ObjectDataStore`: the bucket engine under the facade."""

from __future__ import annotations

from typing import Any, Unpack

from .._core.options import StoreOptions
from ..backends._bucket import (
    PART_SIZE,
)
from ..backends.objects import ObjectBackend
from ..keygenerators import KeyGenerator
from ..serializers import Serializer
from ..store import AsyncDataStore
from ..sync import SyncDataStore

__all__ = ["AsyncObjectDataStore", "ObjectDataStore"]


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
        create: bool = True,
        **options: Unpack[StoreOptions],
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
            **options,
        )

    @property
    def url(self) -> str:
        """``s3://bucket/prefix`` (and the endpoint when it is not AWS's)."""
        return self.backend.url

    def __repr__(self) -> str:
        state = " closed" if self._parts.lifecycle.closed else ""
        return f"<{type(self).__name__} {self.url!r}{state}>"


class ObjectDataStore(SyncDataStore[AsyncObjectDataStore]):
    """Blocking twin of `AsyncObjectDataStore` (same arguments)."""

    def __init__(self, bucket: str, prefix: str = "", *args: Any, **options: Any) -> None:
        super().__init__(AsyncObjectDataStore(bucket, prefix, *args, **options))

    @property
    def url(self) -> str:
        return self.async_store.url
