"""The local S3 server of the tests really refuses conditional writes that must fail.

Object-store locks (issue 17) rest on ``If-None-Match: *`` (create only if absent) and
``If-Match: <etag>`` (replace only the version read): a server that ignored them would let
every lock test pass. Checked with obstore, the client the object-store back-end uses.
"""

from __future__ import annotations

from collections.abc import Iterator

import obstore
import pytest
from obstore.exceptions import AlreadyExistsError, PreconditionError
from obstore.store import S3Store
from s3server import ACCESS_KEY, REGION, SECRET_KEY, S3Server, s3_server


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as running:
        yield running


@pytest.fixture
def bucket(server: S3Server) -> S3Store:
    return S3Store(
        server.new_bucket(),
        endpoint=server.endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        client_options={"allow_http": True},
    )


def test_a_second_create_only_put_is_refused(bucket: S3Store) -> None:
    obstore.put(bucket, "lease", b"first", mode="create")
    with pytest.raises(AlreadyExistsError):
        obstore.put(bucket, "lease", b"second", mode="create")
    assert bytes(obstore.get(bucket, "lease").bytes()) == b"first"


def test_a_put_with_a_stale_etag_is_refused(bucket: S3Store) -> None:
    first = obstore.put(bucket, "lease", b"first", mode="create")
    second = obstore.put(bucket, "lease", b"second", mode={"e_tag": first["e_tag"]})
    assert second["e_tag"] != first["e_tag"]
    with pytest.raises(PreconditionError):
        obstore.put(bucket, "lease", b"third", mode={"e_tag": first["e_tag"]})
    assert bytes(obstore.get(bucket, "lease").bytes()) == b"second"
