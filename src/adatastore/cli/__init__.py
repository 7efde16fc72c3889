"""The ``adatastore`` command (also ``python -m adatastore``): look into stores, clean them,
move them, and ask why a lookup missed, without writing Python.

Every sub-command takes the store as ``--url`` (the `open_store` syntax) or from
``ADATASTORE_URL``. Output is for people by default; ``--json`` prints one JSON document for
scripts. Exit codes: 0 done, 1 the answer is "no" (damage found, a miss explained), 2 a
usage or store error (reported in one line, no traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio

from .._core.staleness import stale_entries
from ..errors import DataStoreError
from ..records import ComponentRecord, Entry
from ..store import AsyncDataStore
from . import _text as fmt
from ._explain import Described, rebuild, resolve_type
from ._parser import build_parser
from ._text import UsageError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code.

    Everything printed passes through `_cli_text.Escaping`: stored strings (types, names,
    parameters, host names in provenance) come from storage others may write, and must not
    reach the user's terminal as escape sequences.
    """
    args = build_parser().parse_args(argv)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = fmt.Escaping(stdout), fmt.Escaping(stderr)
    try:
        return _run(args)
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "demo":
            from ..demo import run_demo

            run_demo(directory=args.dir, url=args.url)
            return 0
        result: int = anyio.run(_COMMANDS[args.command], args, backend="asyncio")
    except (DataStoreError, UsageError) as error:
        print(f"adatastore: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("adatastore: interrupted", file=sys.stderr)
        return 130
    return result


async def _open(url: str | None) -> AsyncDataStore:
    """An existing store: the commands look at stores, they never make one (a mistyped
    path is an error, not a new empty store that reports 0 entries)."""
    from ..urls import open_store

    if url is None and not os.environ.get("ADATASTORE_URL"):
        raise UsageError("no store given: pass --url URL or set ADATASTORE_URL")
    return await open_store(url, create=False)


def _matches_type(full_type: str, wanted: str | None) -> bool:
    return wanted is None or full_type == wanted or full_type.endswith("." + wanted)


async def _ls(args: argparse.Namespace) -> int:
    async with await _open(args.url) as store:
        entries = [
            entry
            for entry in await store.list_contents()
            if _matches_type(entry.full_type, args.type)
            and (args.attribute is None or entry.attribute_name == args.attribute)
        ]
        if args.stale:
            stale, unchecked = await stale_entries(store.provenance, entries)
            entries = [entry for entry in entries if (entry.key, entry.attribute_name) in stale]
            _say_unchecked(unchecked)
    entries.sort(key=lambda entry: entry.stored_at, reverse=True)
    if args.json:
        fmt.print_json(
            [
                {**fmt.entry_json(entry), "stale": stale[entry.key, entry.attribute_name]}
                if args.stale
                else fmt.entry_json(entry)
                for entry in entries
            ]
        )
        return 0
    now = datetime.now(UTC)
    rows = [
        (
            entry.key[:12],
            entry.full_type,
            entry.version,
            entry.attribute_name,
            fmt.human_size(entry.size),
            fmt.age(entry.stored_at, now),
        )
        for entry in entries
    ]
    print(fmt.table(("KEY", "TYPE", "VERSION", "ATTRIBUTE", "SIZE", "AGE"), rows))
    if args.stale:
        for entry in entries:
            why = stale[entry.key, entry.attribute_name]
            print(f"stale: {entry.attribute_name!r} of {entry.key[:12]}: {why}")
    print(f"{fmt.count(len(entries), 'entry')}, {fmt.human_size(sum(e.size for e in entries))}")
    return 0


def _say_unchecked(unchecked: dict[str, str]) -> None:
    """Say which types --stale could not check (rather than count them as fresh)."""
    for why in unchecked.values():
        print(f"not checked: {why}", file=sys.stderr)


async def _components(store: AsyncDataStore) -> dict[str, ComponentRecord]:
    """Every stored component record by key (read once per command)."""
    return {record.key: record for record in await store.backend.components(None)}


def _find_component(known: dict[str, ComponentRecord], prefix: str) -> ComponentRecord:
    if len(prefix) < 4:
        raise UsageError(f"key prefix {prefix!r} is too short: give at least 4 characters")
    matches = [record for key, record in known.items() if key.startswith(prefix)]
    if not matches:
        raise UsageError(f"no stored component has a key starting with {prefix!r}")
    if len(matches) > 1:
        exact = [record for record in matches if record.key == prefix]
        if exact:
            return exact[0]
        raise UsageError(
            f"{len(matches)} components have keys starting with {prefix!r}: give more of it"
        )
    return matches[0]


async def _show(args: argparse.Namespace) -> int:
    async with await _open(args.url) as store:
        known = await _components(store)
        record = _find_component(known, args.key)
        entries = [e for e in await store.list_contents() if e.key == record.key]
        provenances = {
            e.attribute_name: await store.provenance(e.key, e.attribute_name) for e in entries
        }
    inputs = [(key, known[key].full_type if key in known else None) for key in record.input_keys]
    if args.json:
        fmt.print_json(
            {
                "key": record.key,
                "type": record.full_type,
                "version": record.version,
                "parameters": record.parameters,
                "inputs": [{"key": key, "type": kind} for key, kind in inputs],
                "attributes": [
                    {
                        **fmt.entry_json(e),
                        "provenance": (
                            None
                            if provenances[e.attribute_name] is None
                            else provenances[e.attribute_name].to_json()  # type: ignore[union-attr]
                        ),
                    }
                    for e in entries
                ],
            }
        )
        return 0
    print(f"key:        {record.key}")
    print(f"type:       {record.full_type}")
    print(f"version:    {record.version}")
    print("parameters:")
    print("\n".join(fmt.tree(record.parameters)))
    print("inputs:" + ("" if inputs else "     none"))
    for key, kind in inputs:
        print(f"  {key[:12]}  {kind or '(not stored here)'}")
    print("attributes:")
    for entry in entries:
        found = provenances[entry.attribute_name]
        where = found.describe() if found else "no provenance recorded"
        print(f"  {entry.attribute_name}  {fmt.human_size(entry.size)}  {where}")
    return 0


async def _stats(args: argparse.Namespace) -> int:
    async with await _open(args.url) as store:
        entries = await store.list_contents()
        stale = None
        if args.stale:
            stale, unchecked = await stale_entries(store.provenance, entries)
            _say_unchecked(unchecked)
    per_type: dict[str, dict[str, int]] = {}
    for entry in entries:
        row = per_type.setdefault(entry.full_type, {"entries": 0, "bytes": 0})
        row["entries"] += 1
        row["bytes"] += entry.size
        if stale is not None:
            row["stale"] = row.get("stale", 0) + ((entry.key, entry.attribute_name) in stale)
    total = sum(entry.size for entry in entries)
    oldest = min((e.stored_at for e in entries), default=None)
    newest = max((e.stored_at for e in entries), default=None)
    components = len({entry.key for entry in entries})
    if args.json:
        fmt.print_json(
            {
                "entries": len(entries),
                "components": components,
                "bytes": total,
                "oldest": None if oldest is None else oldest.isoformat(),
                "newest": None if newest is None else newest.isoformat(),
                "types": per_type,
                **({} if stale is None else {"stale": len(stale)}),
            }
        )
        return 0
    print(f"entries:    {len(entries)}")
    print(f"components: {components}")
    print(f"size:       {fmt.human_size(total)}")
    if stale is not None:
        print(f"stale:      {len(stale)} (made by other code than their type's now)")
    if oldest is not None and newest is not None:
        print(f"oldest:     {oldest:%Y-%m-%d %H:%M:%S} UTC")
        print(f"newest:     {newest:%Y-%m-%d %H:%M:%S} UTC")
        rows = [
            (kind, str(row["entries"]), fmt.human_size(row["bytes"]))
            for kind, row in sorted(per_type.items(), key=lambda item: -item[1]["bytes"])
        ]
        print(fmt.table(("TYPE", "ENTRIES", "SIZE"), rows))
    return 0


async def _verify(args: argparse.Namespace) -> int:
    async with await _open(args.url) as store:
        bar: Callable[[int | None], None] | None = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = fmt.progress_bar(args.progress, total, "verifying")
            bar(done)

        report = await store.verify(repair=args.repair, progress=progress)
        if bar is not None:
            bar(None)
    if args.json:
        fmt.print_json(
            {
                "checked": report.checked,
                "damaged": [
                    {"key": d.key, "attribute": d.attribute_name, "reason": d.reason}
                    for d in report.damaged
                ],
                "removed": report.removed,
                "unreadable": [
                    {"key": d.key, "attribute": d.attribute_name, "reason": d.reason}
                    for d in report.unreadable
                ],
            }
        )
    else:
        for damaged in report.damaged:
            print(f"damaged: {damaged.attribute_name!r} of {damaged.key[:12]}: {damaged.reason}")
        for item in report.unreadable:
            print(f"unreadable: {item.attribute_name!r} of {item.key[:12]}: {item.reason}")
        removed = f", {report.removed} removed" if args.repair else ""
        unreadable = (
            f", {len(report.unreadable)} unreadable (kept: verify again when the storage answers)"
            if report.unreadable
            else ""
        )
        print(
            f"{fmt.count(report.checked, 'entry')} checked, {len(report.damaged)} damaged"
            f"{removed}{unreadable}"
        )
    return 0 if report.ok else 1


async def _prune(args: argparse.Namespace) -> int:
    if args.older_than is None and args.max_size is None:
        raise UsageError("say what to prune: --older-than, --max-size, or both")
    now = datetime.now(UTC)
    if args.lru and args.max_size is None:
        raise UsageError("--lru orders what --max-size deletes: give --max-size too")
    async with await _open(args.url) as store:
        used = await store.backend.last_used() if args.lru else {}

        def last_use(entry: Entry) -> float:  # read, or stored when later
            return max(
                entry.stored_at.timestamp(), used.get((entry.key, entry.attribute_name), 0.0)
            )

        entries = sorted(await store.list_contents(), key=last_use)
        doomed: list[tuple[Entry, str]] = []
        kept = []
        for entry in entries:
            if not _matches_type(entry.full_type, args.type):
                kept.append(entry)
            elif args.older_than is not None and now - entry.stored_at > args.older_than:
                doomed.append((entry, f"older than {fmt.age(now - args.older_than, now)}"))
            else:
                kept.append(entry)
        if args.max_size is not None:
            # With --type, the limit is for the entries of that type; else for the store.
            matching = [entry for entry in kept if _matches_type(entry.full_type, args.type)]
            total = sum(entry.size for entry in matching)
            for entry in matching:  # least recently stored (or used, --lru) first
                if total <= args.max_size:
                    break
                doomed.append((entry, f"over {fmt.human_size(args.max_size)}"))
                total -= entry.size
        if not args.dry_run:
            bar = fmt.progress_bar(args.progress, len(doomed), "pruning")
            gone: set[Entry] = set()
            for start in range(0, len(doomed), 64):  # only entries still as listed go
                batch = [entry for entry, _ in doomed[start : start + 64]]
                gone.update(await store.backend.delete_listed(batch))
                bar(start + len(batch))
            bar(None)
            doomed = [(entry, why) for entry, why in doomed if entry in gone]
    verb = "would delete" if args.dry_run else "deleted"
    if args.json:
        fmt.print_json(
            {
                "dry_run": args.dry_run,
                "deleted": [{**fmt.entry_json(entry), "reason": why} for entry, why in doomed],
                "bytes": sum(entry.size for entry, _ in doomed),
            }
        )
        return 0
    for entry, why in doomed:
        print(
            f"{verb}: {entry.attribute_name!r} of {entry.full_type} {entry.key[:12]} "
            f"({fmt.human_size(entry.size)}, {why})"
        )
    freed = fmt.human_size(sum(entry.size for entry, _ in doomed))
    print(f"{verb} {fmt.count(len(doomed), 'entry')}, {freed}")
    return 0


async def _copy(args: argparse.Namespace) -> int:
    from ..urls import open_store

    async with (
        await open_store(args.source, create=False) as source,
        await open_store(args.destination) as destination,
    ):
        entries = await source.list_contents()
        present = await destination.backend.contains_many(
            [(entry.key, entry.attribute_name) for entry in entries]
        )
        todo = [e for e in entries if (e.key, e.attribute_name) not in present]
        components = await _components(source)
        bar = fmt.progress_bar(args.progress, len(todo))
        copied, damaged = 0, []
        batch: list[tuple[str, str, list[Any], ComponentRecord]] = []
        size = 0
        for number, entry in enumerate(todo, 1):
            data = await source.backend.read(entry.key, entry.attribute_name)
            component = components.get(entry.key)
            if data is not None and component is not None:  # else deleted meanwhile
                try:
                    source._parts.context.codec.open(
                        entry.key, entry.attribute_name, data, verify=True
                    )
                except DataStoreError as error:
                    damaged.append((entry, str(error)))
                else:
                    batch.append((entry.key, entry.attribute_name, [data], component))
                    size += memoryview(data).nbytes
            # Written in groups of 100 entries or 64 MiB, whichever comes first: few
            # transactions, bounded memory, and little to redo after an interruption.
            if len(batch) >= 100 or size >= _COPY_GROUP_BYTES or number == len(todo):
                await destination.backend.write_many(batch)
                copied += len(batch)
                batch, size = [], 0
                bar(copied + len(damaged))
        bar(None)
    for entry, why in damaged:
        print(
            f"skipped damaged: {entry.attribute_name!r} of {entry.key[:12]}: {why}", file=sys.stderr
        )
    print(
        f"copied {fmt.count(copied, 'entry')}, {len(present)} already there, {len(damaged)} damaged"
    )
    return 1 if damaged else 0


_COPY_GROUP_BYTES = 64 << 20


async def _explain(args: argparse.Namespace) -> int:
    text = args.parameters
    if text.startswith("@"):
        try:
            text = await anyio.Path(text[1:]).read_text(encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot read parameters from {text[1:]!r}: {error}") from None
    try:
        parameters = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"--parameters is not JSON: {error}") from None
    if not isinstance(parameters, dict):
        raise UsageError("--parameters must be a JSON object (a mapping of names to values)")
    async with await _open(args.url) as store:
        records = await store.backend.components(None)
        kind = resolve_type(args.type, {record.full_type for record in records})
        known = {record.key: record for record in records} if args.input else {}
        inputs = [rebuild(known, _find_component(known, key)) for key in args.input]
        if args.version is not None:
            versions = [args.version]
        else:
            versions = sorted({r.version for r in records if r.full_type == kind}) or ["1"]
            if len(versions) > 1 and not args.json:
                print(f"no --version given: {kind} is stored at versions {', '.join(versions)}")
        explanations = []
        for version in versions:
            component = Described.make(kind, version, parameters, inputs)
            explanations.append(await store.explain(component, args.attribute, limit=args.limit))
    if args.json:
        documents = [fmt.explanation_json(explanation) for explanation in explanations]
        fmt.print_json(documents[0] if len(documents) == 1 else documents)
    else:
        for version, explanation in zip(versions, explanations, strict=True):
            if len(versions) > 1:
                print(f"version {version}:")
            print(explanation)
    return 0 if any(explanation.hit for explanation in explanations) else 1


_COMMANDS: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
    "ls": _ls,
    "show": _show,
    "stats": _stats,
    "verify": _verify,
    "prune": _prune,
    "copy": _copy,
    "explain": _explain,
}
