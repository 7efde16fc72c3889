"""A real S3-compatible HTTP server on 127.0.0.1 for the tests: moto's, in a thread.

`s3_server()` starts one on a free port and yields its endpoint; each test makes a bucket
of its own (`new_bucket`). moto keeps objects in memory and enforces conditional requests
(``If-None-Match: *`` and ``If-Match``): `tests/test_s3_server.py` checks that first, so
lock tests cannot pass against a server that ignores them.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

ACCESS_KEY = "adatastore-test-key"
SECRET_KEY = "adatastore-test-secret"
REGION = "us-east-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_REGION": REGION,
}
"""The test server's credentials as the AWS environment (for child processes)."""


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def client(self) -> Any:
        """A botocore client of the server."""
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def new_bucket(self) -> str:
        name = f"adatastore-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def options(self) -> dict[str, Any]:
        """Keyword arguments of `AsyncObjectDataStore` for this server."""
        return {
            "endpoint": self.endpoint,
            "region": REGION,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
        }


_shared: list[S3Server] = []


def shared() -> S3Server:
    """The server of this test process, started at the first call, stopped at exit."""
    if not _shared:
        manager = s3_server()
        _shared.append(manager.__enter__())
        atexit.register(manager.__exit__, None, None, None)
    return _shared[0]


def url(prefix: str = "store") -> str:
    """An ``s3://`` URL of a new bucket on the shared server (credentials: `CREDENTIALS`,
    which `helpers.subprocess_env` gives child processes)."""
    server = shared()
    return f"s3://{server.new_bucket()}/{prefix}?endpoint={server.endpoint}"


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()
