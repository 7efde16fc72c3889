"""Run every operation of a store under one process topology; print one JSON line each.

Run as a script (``python topology_driver.py URL TOPOLOGY...``): the component class below
is then defined in ``__main__``, which is ``__mp_main__`` in spawn and forkserver workers,
exactly as in a user's script. Each topology runs the same exercise (store, retrieve,
retrieve_many, contains, get_or_compute, warm, list_contents, delete) in the processes,
threads or event loops it is about, each under a hard time limit, and then checks that the
parent still works and sees what the others stored. `tests/test_topologies.py` reads the
lines; a topology that hangs is reported as such (the child is killed), never waited for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import adatastore
from adatastore import AsyncDataStore, SyncDataStore

LIMIT = float(
    os.environ.get("TOPOLOGY_LIMIT", "60")
)  # seconds a topology may take before it counts as a hang


class Sample:
    """A component defined in the script's ``__main__`` (``__mp_main__`` in workers)."""

    version = "1"

    def __init__(self, tag: str, number: int) -> None:
        self.parameters: dict[str, Any] = {"tag": tag, "number": number}
        self.input = None


def value_of(tag: str, number: int) -> list[Any]:
    return [tag, number, "x" * (number * 50)]


def compute_for(component: Sample) -> list[Any]:
    return value_of(str(component.parameters["tag"]), int(component.parameters["number"]))


def exercise(store: SyncDataStore[Any], tag: str) -> dict[str, Any]:
    """Every operation of the blocking API, checked; returns what it stored."""
    c = [Sample(tag, n) for n in range(5)]
    store.store(c[0], "value", value_of(tag, 0))
    assert store.retrieve(c[0], "value") == value_of(tag, 0), "retrieve"
    assert store.retrieve_many([(c[0], "value"), (c[1], "value")]) == [
        value_of(tag, 0),
        None,
    ], "retrieve_many"
    assert store.contains(c[0], "value"), "contains (stored)"
    assert not store.contains(c[1], "value"), "contains (missing)"
    assert store.get_or_compute(c[1], "value", lambda: value_of(tag, 1)) == value_of(tag, 1)
    assert store.get_or_compute(c[1], "value", lambda: 1 / 0) == value_of(tag, 1)
    report = store.warm([c[2], c[3], c[4]], "value", compute_for, threads=2)
    assert report.computed == 3, f"warm: {report}"
    assert report.ok, f"warm: {report}"
    keys = {entry.key for entry in store.list_contents()}
    assert {store.key_of(item) for item in c} <= keys, "list_contents"
    assert store.delete(c[4]) == 1, "delete"
    assert not store.contains(c[4], "value"), "contains after delete"
    return {tag: [store.key_of(item) for item in c[:4]]}


async def exercise_async(store: AsyncDataStore, tag: str) -> dict[str, Any]:
    """`exercise`, through the async API."""
    c = [Sample(tag, n) for n in range(5)]
    await store.store(c[0], "value", value_of(tag, 0))
    assert await store.retrieve(c[0], "value") == value_of(tag, 0), "retrieve"
    assert await store.retrieve_many([(c[0], "value"), (c[1], "value")]) == [
        value_of(tag, 0),
        None,
    ], "retrieve_many"
    assert await store.contains(c[0], "value"), "contains (stored)"
    assert not await store.contains(c[1], "value"), "contains (missing)"
    assert await store.get_or_compute(c[1], "value", lambda: value_of(tag, 1)) == value_of(tag, 1)
    assert await store.get_or_compute(c[1], "value", lambda: 1 / 0) == value_of(tag, 1)
    report = await store.warm([c[2], c[3], c[4]], "value", compute_for, threads=2)
    assert report.computed == 3, f"warm: {report}"
    assert report.ok, f"warm: {report}"
    keys = {entry.key for entry in await store.list_contents()}
    assert {store.key_of(item) for item in c} <= keys, "list_contents"
    assert await store.delete(c[4]) == 1, "delete"
    assert not await store.contains(c[4], "value"), "contains after delete"
    return {tag: [store.key_of(item) for item in c[:4]]}


def check_sees(store: SyncDataStore[Any], tags: list[str]) -> None:
    """The parent sees what the others stored (stores shared between processes)."""
    for tag in tags:
        for n in range(4):
            found = store.retrieve(Sample(tag, n), "value")
            assert found == value_of(tag, n), f"parent does not see {tag}/{n}: {found!r}"


# -- running something with a hard limit -----------------------------------------------------


def in_fork(work: Callable[[], object]) -> str | None:
    """Run `work` in a forked child; None when it succeeded, else why not."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            work()
            message = b"ok"
        except BaseException:
            message = traceback.format_exc().encode()
        os.write(write, message[-4000:])
        os._exit(0)  # no clean-up of the parent's resources: like multiprocessing's fork
    os.close(write)
    return _wait_child(pid, read)


def _wait_child(pid: int, read: int) -> str | None:
    deadline = time.monotonic() + LIMIT
    chunks = []
    os.set_blocking(read, False)
    while True:
        try:
            chunk = os.read(read, 65536)
            if chunk:
                chunks.append(chunk)
        except BlockingIOError:
            pass
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            try:
                while chunk := os.read(read, 65536):
                    chunks.append(chunk)
            except BlockingIOError:
                pass
            os.close(read)
            text = b"".join(chunks).decode(errors="replace")
            if text == "ok" and os.waitstatus_to_exitcode(status) == 0:
                return None
            return text or f"exit status {os.waitstatus_to_exitcode(status)}"
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
            return f"hang: the child did not finish in {LIMIT:.0f} s"
        threading.Event().wait(0.01)  # polling a child process: no event to wait on


def in_threads(works: list[Callable[[], object]]) -> str | None:
    """Run each of `works` in its own thread at once; None when all succeeded."""
    errors: list[str] = []
    start = threading.Barrier(len(works))

    def run(work: Callable[[], object]) -> None:
        try:
            start.wait()
            work()
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=run, args=(work,), daemon=True) for work in works]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + LIMIT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        return f"hang: threads did not finish in {LIMIT:.0f} s"
    return errors[0] if errors else None


# -- the topologies ------------------------------------------------------------------------------


def spawned_worker(url: str, tag: str) -> dict[str, Any]:
    with adatastore.open_store_sync(url) as store:
        return exercise(store, tag)


def pool_worker(tag: str) -> dict[str, Any]:
    assert POOL_STORE is not None
    return exercise(POOL_STORE, tag)


POOL_STORE: SyncDataStore[Any] | None = None


def run_topology(url: str, topology: str, shared: bool) -> str | None:
    """Run one topology; None when every step succeeded, else the first failure."""
    global POOL_STORE
    t = topology  # prefix of the tags: each topology stores entries of its own
    if topology == "fork-used":
        store = adatastore.open_store_sync(url)
        exercise(store, f"{t}-parent-before")
        failure = in_fork(lambda: exercise(store, f"{t}-child"))
        if failure is None:
            exercise(store, f"{t}-parent-after")
            if shared:
                check_sees(store, [f"{t}-child"])
        store.close()
        return failure
    if topology == "fork-constructed":  # an async store made, not opened, before the fork
        unopened = parse_and_make(url)
        failure = in_fork(lambda: asyncio.run(exercise_async(unopened, f"{t}-child")))
        if failure is None:
            asyncio.run(exercise_async(unopened, f"{t}-parent-after"))
        asyncio.run(unopened.aclose())
        return failure
    if topology == "fork-async":
        async_store = asyncio.run(_opened(url))
        asyncio.run(exercise_async(async_store, f"{t}-parent-before"))
        failure = in_fork(lambda: asyncio.run(exercise_async(async_store, f"{t}-child")))
        if failure is None:
            asyncio.run(exercise_async(async_store, f"{t}-parent-after"))
        asyncio.run(async_store.aclose())
        return failure
    if topology in ("pool", "spawn", "forkserver"):
        store = adatastore.open_store_sync(url)
        exercise(store, f"{t}-parent-before")
        tags = [f"{topology}-{n}" for n in range(2)]
        if topology == "pool":
            POOL_STORE = store
            pool = concurrent.futures.ProcessPoolExecutor(2)
            futures = [pool.submit(pool_worker, tag) for tag in tags]
        else:
            context = multiprocessing.get_context(topology)
            pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=context)
            futures = [pool.submit(spawned_worker, url, tag) for tag in tags]
        try:
            results: dict[str, Any] = {}
            for future in futures:
                results.update(future.result(timeout=LIMIT))
        except concurrent.futures.TimeoutError:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
            pool.shutdown(wait=False, cancel_futures=True)
            return f"hang: {topology} workers did not finish in {LIMIT:.0f} s"
        pool.shutdown()
        for tag in tags:
            expected = [store.key_of(Sample(tag, n)) for n in range(4)]
            assert results[tag] == expected, f"{topology}: keys differ: {results[tag]} {expected}"
        exercise(store, f"{t}-parent-after")
        if shared:
            check_sees(store, tags)
        store.close()
        return None
    if topology == "threads":
        store = adatastore.open_store_sync(url)
        failure = in_threads(
            [lambda tag=f"{t}-thread-{n}": exercise(store, tag) for n in range(16)]  # type: ignore[misc]
        )
        if failure is None:
            exercise(store, f"{t}-parent-after")
            check_sees(store, [f"{t}-thread-{n}" for n in range(16)])
        store.close()
        return failure
    if topology == "loops":
        async_store = asyncio.run(_opened(url))
        failure = in_threads(
            [
                lambda tag=f"{t}-loop-{n}": asyncio.run(exercise_async(async_store, tag))  # type: ignore[misc]
                for n in range(3)
            ]
        )
        if failure is None:
            asyncio.run(exercise_async(async_store, f"{t}-parent-after"))
        asyncio.run(async_store.aclose())
        return failure
    if topology == "rerun":
        async_store = asyncio.run(_opened(url))
        asyncio.run(exercise_async(async_store, f"{t}-first-run"))
        asyncio.run(exercise_async(async_store, f"{t}-second-run"))
        asyncio.run(async_store.aclose())
        return None
    raise ValueError(f"unknown topology {topology!r}")


async def _opened(url: str) -> AsyncDataStore:
    return await adatastore.open_store(url)


def parse_and_make(url: str) -> AsyncDataStore:
    """The async store `url` names, constructed but not opened."""
    from adatastore.urls import _resolve

    return _resolve(url, {})


def main() -> None:
    url, topologies = sys.argv[1], sys.argv[2:]
    shared = not url.startswith("memory")
    if "django" in url:
        import adatastore.backends.django.store  # noqa: F401 - imported before any fork
    for topology in topologies:
        started = time.monotonic()
        # Each topology in a thread of its own, so that one that hangs is reported and the
        # next ones still run.
        outcome: list[str | None] = []

        def run(topology: str = topology, outcome: list[str | None] = outcome) -> None:
            try:
                outcome.append(run_topology(url, topology, shared))
            except BaseException:
                outcome.append(traceback.format_exc())

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(LIMIT * 2)
        failure = outcome[0] if outcome else f"hang: {topology} did not finish"
        line = {"topology": topology, "failure": failure, "seconds": time.monotonic() - started}
        print(json.dumps(line), flush=True)
        if not outcome:
            break  # the process may be wedged: the test reports the rest as not run
    sys.stdout.flush()
    os._exit(0)  # a wedged store must not hang this driver's exit: that has its own test


if __name__ == "__main__":
    main()
