"""`store_many` on the files back-end: all or nothing, also if the writer dies.

A batch is staged in ``.batches/<host>-<pid>-<random>/``, committed by renaming its plan
to ``<staging>.json``, then moved into place record by record; the next open on the same
host finishes a dead writer's committed batch and removes an uncommitted one.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
from collections.abc import Sequence

from ..._storage import fsio as _fsio
from ..._storage.beneath import Directory
from ...backend import RecordWrite
from ._format import (
    BATCH_DIR,
    COMPONENT_FILE,
    HOST,
    MAX_JSON,
    PLAN,
    RECORD_SUFFIX,
    RETRIES,
    names,
    plain_name,
    remove_tree,
)


def write_batch(root: Directory, durable: bool, records: Sequence[RecordWrite]) -> None:
    """Write several records, all or nothing, also if this process dies.

    Every record (and its component's metadata) is written first into a staging
    directory ``.batches/<host>-<pid>-<random>/``: a failure there (a full disk)
    removes it, and nothing was stored. Then the plan is written there too and renamed
    to ``<staging>.json``: the commit point. Then the records move into place, each as a
    single store would. A writer that dies before the plan leaves a staging
    directory that the next open removes; one that dies after it leaves a plan that
    the next open carries out.
    """
    name = f"{HOST}-{os.getpid()}-{secrets.token_hex(8)}"
    with root.subdirectory(BATCH_DIR, create=True) as batches:
        staging = batches.subdirectory(name, create=True)
        try:
            with staging:
                plan = []
                for number, (key, attribute_name, record, component) in enumerate(records):
                    staging.write_new(f"{number}.rec", record, durable=durable)
                    staging.write_new(f"{number}.json", [component.to_json()], durable=durable)
                    plan.append(list(names(key, attribute_name)))
                # written inside the staging directory, then renamed out: a writer
                # killed before the rename leaves nothing outside what recovery removes
                staging.write_new(PLAN, [json.dumps(plan).encode()], durable=durable)
                batches.move_in(staging, PLAN, name + ".json")
            if durable:
                batches.fsync()
        except BaseException:
            batches.unlink(name + ".json")
            remove_tree(batches, name)
            raise
        carry_out(root, durable, batches, name, plan)


def carry_out(
    root: Directory, durable: bool, batches: Directory, name: str, plan: list[list[str]]
) -> None:
    """Move a committed batch's records into place (again, after a crash: idempotent)."""
    with batches.subdirectory(name) as staging:
        for number, (entry_name, record_name) in enumerate(plan):
            if not staging.exists(f"{number}.rec"):
                continue  # moved before the crash
            meta = staging.read(f"{number}.json")
            if meta is None:
                continue
            move_in(root, durable, staging, f"{number}.rec", entry_name, record_name, bytes(meta))
    batches.unlink(name + ".json")
    remove_tree(batches, name)


def move_in(
    root: Directory,
    durable: bool,
    staging: Directory,
    staged: str,
    entry_name: str,
    record_name: str,
    meta: bytes,
) -> None:
    """Move a staged record into its entry, as `blocking_write` writes one."""
    for attempt in itertools.count():
        try:
            with root.subdirectory(entry_name, create=True) as entry:
                if not entry.exists(COMPONENT_FILE):
                    entry.atomic_write(COMPONENT_FILE, [meta], durable=durable)
                entry.move_in(staging, staged, record_name)
                if not entry.exists(COMPONENT_FILE):
                    entry.atomic_write(COMPONENT_FILE, [meta], durable=durable)
                if durable:
                    entry.fsync()
        except FileNotFoundError:
            if attempt >= RETRIES or not os.path.isdir(root.path):
                raise
        else:
            return


def recover_batches(root: Directory, durable: bool) -> None:
    """Finish or remove the batches of writers of this host that died."""
    try:
        batches = root.subdirectory(BATCH_DIR)
    except FileNotFoundError:
        return
    with batches:
        for name in sorted(batches.names()):
            writer, _, _ = name.removesuffix(".json").rpartition("-")
            host, _, pid = writer.rpartition("-")
            if host != HOST or not pid.isdigit() or _fsio.process_alive(int(pid)):
                continue
            if name.endswith(".json"):
                plan = read_plan(batches, name)
                if plan is None:
                    batches.unlink(name)
                else:
                    carry_out(root, durable, batches, name.removesuffix(".json"), plan)
            elif not batches.exists(name + ".json"):
                remove_tree(batches, name)  # died before its commit point


def read_plan(batches: Directory, name: str) -> list[list[str]] | None:
    """A batch's plan, if it is one we wrote: pairs of plain names, nothing else."""
    try:
        data = batches.read(name)
        if data is None:
            return None
        plan = json.loads(bytes(data[:MAX_JSON]))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(plan, list):
        return None
    for item in plan:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and all(isinstance(part, str) and plain_name(part) for part in item)
            and item[1].endswith(RECORD_SUFFIX)
        ):
            return None
    return plan
