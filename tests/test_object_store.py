"""What only the ``s3://`` back-end has: configuration the AWS way, its errors, leases that
are renewed and taken over, multipart uploads (whole or absent, even when the writer is
killed), ranged reads that never mix two versions, and workers opening it from its spec.

The shared behaviour (conformance, single flight across 4 processes, a killed lock holder
taken over, topologies, races, the command) runs on it from the modules that test every
back-end. The server is moto's, on 127.0.0.1 (`s3server`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import anyio.to_thread
import numpy as np
import pytest
import s3server
from cluster_tasks import Logged, done_counts, points
from components import SimpleComponent
from helpers import eventually, run_python, subprocess_env
from s3server import ACCESS_KEY, SECRET_KEY, S3Server
from servers import fresh_database

from adatastore import (
    AsyncObjectDataStore,
    ObjectDataStore,
    open_store,
    open_store_sync,
)
from adatastore.backends import objects
from adatastore.backends._bucket_payloads import BucketPayloads
from adatastore.errors import ConfigurationError, StorageError

pytestmark = pytest.mark.anyio


def _uploads(s3: S3Server, bucket: str) -> list[dict[str, Any]]:
    uploads: list[dict[str, Any]] = (
        s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    )
    return uploads


# -- configuration --------------------------------------------------------------------------


async def test_the_aws_environment_configures_a_url(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Endpoint, region and credentials from AWS_* variables; the URL names only the
    bucket and the prefix."""
    bucket = s3.new_bucket()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    async with await open_store(f"s3://{bucket}/runs/2026") as store:
        assert isinstance(store, AsyncObjectDataStore)
        assert (store.backend.endpoint, store.backend.region) == (s3.endpoint, "eu-west-1")
        await store.store(SimpleComponent({"a": 1}), "x", [1, 2])
        assert await store.retrieve(SimpleComponent({"a": 1}), "x") == [1, 2]
    names = [item["Key"] for item in s3.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert all(name.startswith("runs/2026/") for name in names)
    assert "runs/2026/.adatastore" in names


async def test_url_options_win_and_a_missing_store_is_not_made(s3: S3Server) -> None:
    bucket = s3.new_bucket()
    options = f"endpoint={s3.endpoint}&region=us-east-1&lease=7&timeout=3&concurrency=4"
    async with await open_store(f"s3://{bucket}/p?{options}") as store:
        backend = store.backend
        assert isinstance(backend, objects.ObjectBackend)
        assert (backend.lease, backend.timeout, backend.concurrency) == (7.0, 3.0, 4)
    with pytest.raises(ConfigurationError, match="no store at"):
        await open_store(f"s3://{bucket}/elsewhere?endpoint={s3.endpoint}&create=false")
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix="elsewhere")
    assert listed.get("KeyCount") == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3:///prefix", "names no bucket"),
        ("s3://Not_A_Bucket/p", "not an S3 bucket name"),
        ("s3://key:secret@bucket/p", "credentials do not go in an s3:// URL"),
        ("s3://bucket/p?lease=-1", "lease"),
        ("s3://bucket/p?colour=red", "unknown option"),
        ("s3://bucket/a/../b", "not a usable prefix"),
    ],
)
def test_bad_urls_are_refused_before_any_request(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as refused:
        open_store_sync(url)
    assert "secret" not in str(refused.value).replace("secret@", "")


async def test_a_foreign_marker_is_refused(s3: S3Server) -> None:
    bucket = s3.new_bucket()
    s3.client().put_object(Bucket=bucket, Key="p/.adatastore", Body=b'{"format": "other"}')
    with pytest.raises(ConfigurationError, match="not an adatastore marker"):
        await open_store(f"s3://{bucket}/p?endpoint={s3.endpoint}")


# -- errors, and no credentials in them -------------------------------------------------------


def _never_shows_the_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET_KEY not in text
        assert ACCESS_KEY not in text


async def test_a_missing_bucket_is_named(s3: S3Server) -> None:
    store = AsyncObjectDataStore("adatastore-no-such-bucket", "p", **s3.options())
    with pytest.raises(ConfigurationError, match="'adatastore-no-such-bucket' does not exist") as e:
        await store.open()
    _never_shows_the_secret(str(e.value), repr(store), repr(store.backend.spec()))


@pytest.mark.slow
async def test_an_unreachable_endpoint_is_a_storage_error_not_a_hang() -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = AsyncObjectDataStore(
        "adatastore-any",
        endpoint=f"http://127.0.0.1:{port}",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        timeout=1,
    )
    with pytest.raises(StorageError, match=f"cannot reach the endpoint http://127.0.0.1:{port}"):
        await store.open()


def test_missing_credentials_are_named(s3: S3Server, tmp_path: Path) -> None:
    """No AWS_* credentials, no profile, no instance metadata: a ConfigurationError."""
    env = {name: value for name, value in subprocess_env().items() if not name.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    code = f"""
        import adatastore
        try:
            adatastore.open_store_sync("s3://{s3.new_bucket()}/p?endpoint={s3.endpoint}")
        except adatastore.ConfigurationError as error:
            print("refused:", error)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert "refused:" in result.stdout, result.stderr
    assert "no AWS credentials found" in result.stdout


@pytest.fixture(scope="module")
def auth() -> Iterator[s3server.AuthServer]:
    with s3server.auth_server() as server:
        yield server


@pytest.mark.slow
async def test_a_wrong_secret_is_refused_and_never_shown(auth: s3server.AuthServer) -> None:
    good = AsyncObjectDataStore(
        auth.bucket,
        "p",
        endpoint=auth.endpoint,
        access_key_id=auth.access_key,
        secret_access_key=auth.secret_key,
    )
    async with good:
        await good.store(SimpleComponent({"a": 1}), "x", 1)
        shown = [repr(good), repr(good.spec), good.url, good.backend.spec().url]
    wrong_secret = "wrong-secret-" + auth.secret_key[:8]
    bad = AsyncObjectDataStore(
        auth.bucket,
        "p",
        endpoint=auth.endpoint,
        access_key_id=auth.access_key,
        secret_access_key=wrong_secret,
    )
    with pytest.raises(ConfigurationError, match="refused the credentials") as refused:
        await bad.open()
    for text in [*shown, str(refused.value), repr(bad)]:
        assert auth.secret_key not in text
        assert wrong_secret not in text
    result = run_python(
        f"""
        import os
        from adatastore import cli
        os.environ.update(AWS_ACCESS_KEY_ID={auth.access_key!r},
                          AWS_SECRET_ACCESS_KEY={wrong_secret!r})
        raise SystemExit(cli.main(["ls", "--url", "s3://{auth.bucket}/p?endpoint={auth.endpoint}"]))
        """
    )
    assert result.returncode != 0
    assert "refused the credentials" in result.stderr
    assert wrong_secret not in result.stdout + result.stderr


# -- leases ---------------------------------------------------------------------------------

HOLDER = """
import sys, threading
import adatastore
from components import SimpleComponent

store = adatastore.open_store_sync(sys.argv[1])
go = threading.Event()

def compute():
    print("computing", flush=True)
    sys.stdin.readline()           # until the test says so: longer than several leases
    return "from the holder"

print(store.get_or_compute(SimpleComponent({"leased": 1}), "v", compute), flush=True)
store.close()
"""

WAITER = """
import sys
import adatastore
from components import SimpleComponent

store = adatastore.open_store_sync(sys.argv[1])
print(store.get_or_compute(SimpleComponent({"leased": 1}), "v", lambda: "from the waiter"))
store.close()
"""


@pytest.mark.slow
def test_a_live_holder_renews_its_lease_past_its_length(s3: S3Server) -> None:
    """A lease of 1 s held for 4 s of computation: renewed every third of a second, it is
    never taken over, and the waiter gets the holder's value."""
    url = s3server.url(lease=1)
    open_store_sync(url).close()
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), url],
        env=subprocess_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "computing"
        with subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WAITER), url],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            text=True,
        ) as waiter:
            # fault-injection timing, not synchronisation: hold the lease 4 times its length
            with contextlib.suppress(subprocess.TimeoutExpired):
                waiter.wait(timeout=4)
            assert waiter.poll() is None, "the waiter took over a lease that was renewed"
            holder.stdin.write("done\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "from the holder"
            assert waiter.communicate(timeout=60)[0].strip() == "from the holder"


async def test_cleanup_removes_expired_leases_and_leaves_held_ones(s3: S3Server) -> None:
    async with AsyncObjectDataStore(s3.new_bucket(), "p", lease=1, **s3.options()) as store:
        backend = store.backend
        expired = backend.name("l/expired.lease")
        body = b'{"holder": "gone", "expires": 0}'
        await anyio.to_thread.run_sync(backend.objects.create, expired, body)

        def leases() -> list[str]:
            return [item["Key"] for item in backend.objects.listing(backend.name("l/"))]

        async with backend.lock("key", "name", None) as taken:
            assert taken
            assert len(await anyio.to_thread.run_sync(leases)) == 2
            assert await store.cleanup(older_than=0) == 1  # the expired one only
            (held,) = await anyio.to_thread.run_sync(leases)
            assert held != expired
        assert await anyio.to_thread.run_sync(leases) == []  # released: deleted
    # and the renewal thread ended with the last lease held
    await eventually(lambda: all(t.name != "adatastore-leases" for t in threading.enumerate()), 10)


# -- large records --------------------------------------------------------------------------


@pytest.mark.parametrize("part_size", [16 << 20, 5 << 20])
async def test_a_large_array_goes_up_in_parts_and_comes_back_whole(
    s3: S3Server, part_size: int
) -> None:
    """40 MB in 3 parts of 16 MiB, or in 8 of 5 MiB (more than are sent at once)."""
    big = np.random.default_rng(3).standard_normal(5_000_000)
    bucket = s3.new_bucket()
    async with AsyncObjectDataStore(bucket, "p", part_size=part_size, **s3.options()) as store:
        await store.store(SimpleComponent({"big": 1}), "array", big)
        back = await store.retrieve(SimpleComponent({"big": 1}), "array")
        np.testing.assert_array_equal(back, big)
        assert back.flags.writeable
        (entry,) = await store.list_contents()
        assert entry.size > big.nbytes
        assert (await store.verify()).ok
    assert _uploads(s3, bucket) == []


def test_a_record_replaced_while_read_in_ranges_is_never_mixed(s3: S3Server) -> None:
    """Two 12 MB values written in turn by one thread while another reads in 5 MB ranges:
    every read is one value or the other, whole (a replaced object is read again)."""
    values = [np.full(1_500_000, n, dtype=np.float64) for n in (1.0, 2.0)]
    store = ObjectDataStore(s3.new_bucket(), "p", part_size=5 << 20, **s3.options())
    c = SimpleComponent({"replaced": 1})
    store.store(c, "v", values[0])
    done = threading.Event()

    def writer() -> None:
        turn = 0
        while not done.is_set():
            turn += 1
            store.store(c, "v", values[turn % 2])

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        writing = pool.submit(writer)
        try:
            for _ in range(12):
                back = store.retrieve(c, "v")
                assert back[0] in (1.0, 2.0)
                assert (back == back[0]).all(), "a read mixed two versions"
        finally:
            done.set()
        writing.result()
    store.close()


def _killed_when(script: str, line: str, *args: str) -> None:
    """Run `script` in a new process; SIGKILL it once it prints `line`."""
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        text=True,
    ) as writer:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == line
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)


KILLED_UPLOAD = """
import sys, time
import anyio
import anyio.to_thread
import numpy as np
import adatastore
from components import SimpleComponent

store = adatastore.open_store_sync(sys.argv[1], part_size=16 << 20)
client = store.async_store.backend.objects.client

def hang(**request):                # the parts are up; die before completing
    print("parts uploaded", flush=True)
    time.sleep(3600)

client.complete_multipart_upload = hang
store.store(SimpleComponent({"big": 1}), "v", np.full(5_000_000, 2.0))
"""


@pytest.mark.slow
def test_a_writer_killed_mid_upload_leaves_the_old_value_and_cleanup_removes_its_parts(
    s3: S3Server,
) -> None:
    url = s3server.url()
    bucket, _, _ = s3server.parse(url)
    store = open_store_sync(url)
    old = np.full(5_000_000, 1.0)
    store.store(SimpleComponent({"big": 1}), "v", old)
    _killed_when(KILLED_UPLOAD, "parts uploaded", url)
    np.testing.assert_array_equal(store.retrieve(SimpleComponent({"big": 1}), "v"), old)
    assert len(_uploads(s3, bucket)) == 1  # its parts, kept by the server
    assert store.cleanup(older_than=3600) == 0  # a young upload may be in progress
    assert store.cleanup(older_than=0) == 1
    assert _uploads(s3, bucket) == []
    assert store.verify().ok
    store.close()


# -- workers open it from its spec ----------------------------------------------------------


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.slow
def test_process_pool_workers_store_each_point_once(
    s3: S3Server, tmp_path: Path, method: str
) -> None:
    """Workers open the store from its spec (in a forked worker too, after the parent
    used its client) and store what they compute, each point once."""
    log = str(tmp_path / "log")
    store = open_store_sync(s3server.url())
    store.store(points(1, start=5)[0], "square", 25)  # the parent used the client
    context = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        report = store.warm(points(20), "square", Logged(log), executor=pool)
    assert (report.computed, report.already_stored) == (19, 1)
    assert done_counts(log) == {n: 1 for n in range(20) if n != 5}
    assert all(worker != f"{os.uname().nodename}:{os.getpid()}" for worker in report.workers)
    values = store.retrieve_many([(c, "square") for c in points(20)])
    assert values == [n * n for n in range(20)]
    store.close()


# -- the command copies to and from it ------------------------------------------------------


@pytest.mark.slow
def test_copy_to_and_from_s3(tmp_path: Path) -> None:
    sqlite, back = f"sqlite:///{tmp_path}/source.db", f"file://{tmp_path}/back"
    bucket = s3server.url()
    source = open_store_sync(sqlite)
    source.store_many([(SimpleComponent({"n": n}), "v", {"n": n}) for n in range(200)])
    source.close()
    for origin, target in ((sqlite, bucket), (bucket, back)):
        result = subprocess.run(
            [sys.executable, "-m", "adatastore", "copy", origin, target, "--no-progress"],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "copied 200 entries" in result.stdout
    stores = [open_store_sync(url) for url in (sqlite, bucket, back)]
    try:
        listings = [
            sorted((e.key, e.attribute_name, e.full_type, e.version) for e in s.list_contents())
            for s in stores
        ]
        assert listings[0] == listings[1] == listings[2]
        assert len(listings[0]) == 200
        assert stores[2].retrieve(SimpleComponent({"n": 7}), "v") == {"n": 7}
        assert all(s.verify().ok for s in stores)
    finally:
        for s in stores:
            s.close()


# -- payloads in a bucket, rows in a database ------------------------------------------------


def _objects(s3: S3Server, bucket: str, prefix: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


@contextlib.contextmanager
def _indexed(index: str, directory: Path, payloads: str) -> Iterator[str]:
    """The URL of a store whose rows are in `index` and whose records are in `payloads`."""
    option = f"payloads={quote(payloads, safe='')}"
    if index == "sqlite":
        yield f"sqlite:///{directory}/index.db?{option}"
    else:
        with fresh_database("postgresql") as database:
            yield f"django+postgresql://postgres@127.0.0.1:5432/{database['NAME']}?{option}"


INDEXES = ["sqlite", "django-postgresql"]


@pytest.mark.parametrize("index", INDEXES)
def test_large_records_go_to_the_bucket_and_leave_with_their_rows(
    s3: S3Server, tmp_path: Path, index: str
) -> None:
    """Rows in the database, large records as objects (none in a payload directory); a
    replaced or deleted record's object is deleted with its row."""
    bucket = s3.new_bucket()
    payloads = f"s3://{bucket}/payloads?endpoint={s3.endpoint}"
    with _indexed(index, tmp_path, payloads) as url:
        store = open_store_sync(url)
        big, small = np.arange(100_000, dtype=np.float64), [1, 2, 3]
        c = SimpleComponent({"payloads": 1})
        store.store(c, "big", big)
        store.store(c, "small", small)
        found = _objects(s3, bucket, "payloads/")
        first = found[0]
        assert re.fullmatch(
            r"payloads/(records/[0-9a-f]+/)?([0-9a-f]{2})/\2[0-9a-f]{30}\.rec", first
        )
        assert len(found) == (1 if index == "sqlite" else 2)  # Django: every record
        assert not any(tmp_path.rglob("*.rec"))
        np.testing.assert_array_equal(store.retrieve(c, "big"), big)
        assert store.retrieve(c, "small") == small
        store.store(c, "big", big * 2)  # replaced: the old object goes
        again = _objects(s3, bucket, "payloads/")
        assert len(again) == len(found)
        assert len(set(found) - set(again)) == 1
        assert store.verify().ok
        spec = store.async_store.spec
        assert spec is not None
        assert spec.backend.arguments["payloads"] == payloads
        store.delete(c)
        assert _objects(s3, bucket, "payloads/") == []
        store.close()


@pytest.mark.parametrize("index", INDEXES)
def test_a_failed_transaction_leaves_no_object(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: str
) -> None:
    bucket = s3.new_bucket()
    c = SimpleComponent({"fails": 1})

    def fails(*args: object, **kwargs: object) -> None:
        raise OSError("the transaction fails after the upload")

    monkeypatch.setattr(BucketPayloads, "move_in", fails)
    with _indexed(index, tmp_path, f"s3://{bucket}/p?endpoint={s3.endpoint}") as url:
        store = open_store_sync(url)
        with pytest.raises((StorageError, OSError)):
            store.store(c, "big", np.zeros(100_000))
        assert _objects(s3, bucket, "p/") == []
        assert not store.contains(c, "big")
        store.close()


KILLED_INDEXED = """
import sys, time
import numpy as np
import adatastore
from adatastore.backends._bucket_payloads import BucketPayloads
from components import SimpleComponent

def hang(self, temp, name, *, durable):     # uploaded; die before the row commits
    print("uploaded", flush=True)
    time.sleep(3600)

BucketPayloads.move_in = hang
store = adatastore.open_store_sync(sys.argv[1])
store.store(SimpleComponent({"orphan": 1}), "v", np.zeros(100_000))
"""


@pytest.mark.parametrize("index", INDEXES)
def test_a_writer_killed_after_its_upload_leaves_an_orphan_that_cleanup_removes(
    s3: S3Server, tmp_path: Path, index: str
) -> None:
    bucket = s3.new_bucket()
    with _indexed(index, tmp_path, f"s3://{bucket}/p?endpoint={s3.endpoint}") as url:
        store = open_store_sync(url)
        kept = SimpleComponent({"kept": 1})
        store.store(kept, "v", np.ones(100_000))
        _killed_when(KILLED_INDEXED, "uploaded", url)
        assert len(_objects(s3, bucket, "p/")) == 2  # the kept record's, and the orphan
        assert not store.contains(SimpleComponent({"orphan": 1}), "v")
        assert store.cleanup(older_than=3600) == 0  # young: may be a write in progress
        assert store.cleanup(older_than=0) == 1
        assert len(_objects(s3, bucket, "p/")) == 1
        np.testing.assert_array_equal(store.retrieve(kept, "v"), np.ones(100_000))
        assert store.verify().ok
        store.close()


def test_each_store_resolves_its_own_credentials_with_the_models_loaded_once(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stores share botocore's loader of service models (a fresh one per store cost
    0.19 s of every open), not a session: credentials are still read per store, so a
    store made after the AWS environment changed signs with the new key."""
    from adatastore.backends._bucket import Bucket

    def bucket() -> Bucket:
        made = Bucket(
            "b",
            where="test",
            endpoint=s3.endpoint,
            region="us-east-1",
            credentials=(None, None, None),
            timeout=5,
            concurrency=1,
            part_size=5 << 20,
        )
        assert made.client is not None  # made now, with the environment of now
        return made

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first-key")
    first = bucket()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "second-key")
    second = bucket()
    try:
        signers = [b.client._request_signer for b in (first, second)]
        assert [signer._credentials.access_key for signer in signers] == ["first-key", "second-key"]
        loaders = {id(b.client.meta.service_model._service_description) for b in (first, second)}
        assert len(loaders) == 1  # the parsed model is the loader's, parsed once
    finally:
        first.close()
        second.close()


async def test_a_listing_reads_again_only_the_component_records_that_changed(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing shows each component record's ETag; one unchanged since it was read is
    not fetched again (a GET per entry per listing was most of an S3 store's listing
    cost), and one written since (here: damaged in place) is read again and reported."""
    bucket = s3.new_bucket()
    async with AsyncObjectDataStore(bucket, "p", **s3.options()) as store:
        for n in range(5):
            await store.store(SimpleComponent({"n": n}), "v", n)
        backend = store.backend
        fetched: list[str] = []
        get = backend.objects.get

        def counted(name: str, **options: Any) -> Any:
            fetched.append(name)
            return get(name, **options)

        monkeypatch.setattr(backend.objects, "get", counted)
        first = await store.list_contents()
        assert len(first) == 5
        assert sum(name.endswith("/component.json") for name in fetched) == 5
        fetched.clear()
        assert await store.list_contents() == first
        assert fetched == []  # nothing changed: nothing read
        key = store.key_of(SimpleComponent({"n": 3}))
        damaged = backend.record_name(key)  # the entry's component.json
        s3.client().put_object(Bucket=bucket, Key=damaged, Body=b"{")
        again = await store.list_contents()
        assert [name for name in fetched if name.endswith("/component.json")] == [damaged]
        assert {entry.full_type for entry in again if entry.key == key} == {""}
        assert len((await store.verify()).damaged) == 1
