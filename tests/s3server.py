"""A real S3-compatible HTTP server on 127.0.0.1 for the tests: moto's, in a thread.

`s3_server()` starts one on a free port and yields its endpoint; each test makes a bucket
of its own (`new_bucket`). moto keeps objects in memory and enforces conditional requests
(``If-None-Match: *`` and ``If-Match``): `tests/test_s3_server.py` checks that first, so
lock tests cannot pass against a server that ignores them.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
        """A botocore client of the server (one per process: made fresh, each cost 0.16 s
        of every S3 case's setup)."""
        return _admin_client(self.endpoint, os.getpid())

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


def url(prefix: str = "store", **options: object) -> str:
    """An ``s3://`` URL of a new bucket on the shared server (credentials: `CREDENTIALS`,
    which `helpers.subprocess_env` gives child processes), with more query `options`."""
    server = shared()
    query = "".join(f"&{name}={value}" for name, value in options.items())
    return f"s3://{server.new_bucket()}/{prefix}?endpoint={server.endpoint}{query}"


def parse(store_url: str) -> tuple[str, str, str]:
    """(bucket, prefix, endpoint) of a URL `url` made."""
    parts = urlsplit(store_url)
    return parts.netloc, parts.path.strip("/"), parse_qs(parts.query)["endpoint"][0]


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    _list_moto_modules_once()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


def _list_moto_modules_once() -> None:
    """moto's server finds the service of every request by listing its own package
    directory (``moto.backends.list_of_moto_modules``: a listdir and 180 isdir calls, twice
    per request): 40% of the server's CPU per request, profiled here (yappi, 400 PUTs and
    GETs of 1 KB: 2.7 of its 6.6 s). The list cannot change while the tests run."""
    from moto import backends

    if not isinstance(backends.list_of_moto_modules, functools.partial):
        modules = tuple(backends.list_of_moto_modules())
        backends.list_of_moto_modules = functools.partial(iter, modules)


@dataclass(frozen=True)
class AuthServer:
    """A server that checks signatures, with one user allowed everything on `bucket`."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str


@contextlib.contextmanager
def auth_server() -> Iterator[AuthServer]:
    """moto in a process of its own that checks every request's signature against the
    IAM users it knows (moto checks none by default): its first 4 requests make a user,
    its key, its policy and a bucket; every later one must be signed by that key."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        endpoint = f"http://127.0.0.1:{port}"
        iam = _client("iam", endpoint, "setup", "setup")
        iam.create_user(UserName="adatastore")
        key = iam.create_access_key(UserName="adatastore")["AccessKey"]
        everything = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(
            UserName="adatastore", PolicyName="all", PolicyDocument=json.dumps(everything)
        )
        access, secret = key["AccessKeyId"], key["SecretAccessKey"]
        _client("s3", endpoint, access, secret).create_bucket(Bucket="adatastore-auth")
        yield AuthServer(endpoint, "adatastore-auth", access, secret)
    finally:
        process.kill()
        process.wait()


@functools.cache
def _admin_client(endpoint: str, pid: int) -> Any:
    import botocore.session

    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    )


def _client(service: str, endpoint: str, access: str, secret: str) -> Any:
    import botocore.session

    return botocore.session.get_session().create_client(
        service,
        endpoint_url=endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name=REGION,
    )


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    """Until the server accepts connections (polled: it says nothing when ready)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the moto server did not start") from None
            time.sleep(0.05)
        else:
            return
