"""The local S3 server of the tests really refuses conditional requests that must fail.

Object-store leases (`adatastore._storage.leases`) rest on ``If-None-Match: *`` (create only if
absent) and ``If-Match: <etag>`` (replace or delete only the version read): a server that
ignored them would let every lock test pass. Checked with botocore, the client the
object-store back-end uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from s3server import S3Server, s3_server


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as running:
        yield running


@pytest.fixture
def bucket(server: S3Server) -> tuple[Any, str]:
    return server.client(), server.new_bucket()


def _refused(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def test_a_second_create_only_put_is_refused(bucket: tuple[Any, str]) -> None:
    client, name = bucket
    client.put_object(Bucket=name, Key="lease", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=name, Key="lease", Body=b"second", IfNoneMatch="*")
    assert _refused(refused) == "PreconditionFailed"
    assert client.get_object(Bucket=name, Key="lease")["Body"].read() == b"first"


def test_a_put_or_delete_with_a_stale_etag_is_refused(bucket: tuple[Any, str]) -> None:
    client, name = bucket
    first = client.put_object(Bucket=name, Key="lease", Body=b"first", IfNoneMatch="*")["ETag"]
    second = client.put_object(Bucket=name, Key="lease", Body=b"second", IfMatch=first)["ETag"]
    assert second != first
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=name, Key="lease", Body=b"third", IfMatch=first)
    assert _refused(refused) == "PreconditionFailed"
    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket=name, Key="lease", IfMatch=first)
    assert _refused(refused) == "PreconditionFailed"
    assert client.get_object(Bucket=name, Key="lease")["Body"].read() == b"second"
    client.delete_object(Bucket=name, Key="lease", IfMatch=second)
    assert client.list_objects_v2(Bucket=name).get("KeyCount") == 0
