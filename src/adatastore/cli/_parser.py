"""The ``adatastore`` command's arguments: one sub-parser per command, their help texts.

Kept apart from the commands (``adatastore.cli``) so the help reads in one place.
"""

from __future__ import annotations

import argparse
from typing import Any

from . import _text as fmt

__all__ = ["build_parser"]


_STALE_HELP = (
    "only entries made by other code than their type's now (same version, edited source): "
    "IMPORTS the modules of the stored types, running their import-time code"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adatastore",
        description="Look into and manage adatastore stores. The store is --url URL "
        "(sqlite:///cache.db, file:///data/cache, django+postgresql://..., or a plain path) "
        "or the ADATASTORE_URL environment variable.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str, *, json_output: bool = True) -> Any:
        sub = commands.add_parser(name, help=summary, description=description)
        if name not in ("copy", "demo"):
            sub.add_argument("--url", help="the store (default: $ADATASTORE_URL)")
        if json_output:
            sub.add_argument("--json", action="store_true", help="print JSON for scripts")
        return sub

    ls = command(
        "ls",
        "list entries: type, version, attribute, size, age",
        "List the stored entries as a table, newest first.",
    )
    ls.add_argument("--type", help="only this component type (full name or its last part)")
    ls.add_argument("--attribute", help="only this attribute name")
    ls.add_argument("--stale", action="store_true", help=_STALE_HELP)

    show = command(
        "show",
        "one component: metadata, parameters, inputs, attributes",
        "Show a stored component: its type, version, parameters as a tree, inputs, and "
        "each stored attribute with its size and provenance.",
    )
    show.add_argument("key", help="the component's key, or a unique prefix of it (4+ chars)")

    stats = command(
        "stats",
        "counts, bytes, per-type breakdown, oldest and newest",
        "Summarize the store: entries, components, bytes, per type, oldest and newest.",
    )
    stats.add_argument("--stale", action="store_true", help="count them: " + _STALE_HELP)

    verify = command(
        "verify",
        "check every entry; exit 1 if any is damaged",
        "Read every entry and check its envelope, checksum and signature. Damaged entries "
        "are listed (and deleted with --repair); the exit code is 1 when any is found.",
    )
    verify.add_argument("--repair", action="store_true", help="delete the damaged entries")
    _progress_option(verify)

    prune = command(
        "prune",
        "delete old entries, or the oldest beyond a size",
        "Delete entries stored before --older-than, and then, with --max-size, the "
        "least recently stored ones until the store fits (with --type: until the entries "
        "of that type fit; the others are left alone). Every deletion is printed; "
        "--dry-run prints them without deleting.",
    )
    prune.add_argument("--older-than", type=fmt.duration, help="e.g. 30d, 12h, 90m, 45s")
    prune.add_argument(
        "--max-size",
        type=fmt.size,
        help="e.g. 10GB, 500MB, 1.5GiB: for the whole store, or with --type for that type",
    )
    prune.add_argument("--type", help="only entries of this type (full name or its last part)")
    prune.add_argument(
        "--lru",
        action="store_true",
        help="with --max-size, delete the least recently *read* first (as stores with "
        "max_size do), not the least recently stored",
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would go; delete none")
    _progress_option(prune)

    copy = command(
        "copy",
        "copy a whole store to another (any back-ends)",
        "Copy every entry of SRC into DST, records unchanged and keys kept (files -> "
        "SQLite -> PostgreSQL and back). Entries DST already holds are skipped, so an "
        "interrupted copy resumes where it stopped.",
    )
    copy.add_argument("source", metavar="SRC", help="the store to copy from (a URL)")
    copy.add_argument("destination", metavar="DST", help="the store to copy into (a URL)")
    _progress_option(copy)

    explain = command(
        "explain",
        "why is a component's attribute not stored? (or where it came from)",
        "Describe a component and ask for one of its attributes: for a hit, where the "
        "entry came from; for a miss, the closest stored components of the same type and "
        "exactly what differs. Exit code 1 for a miss.",
    )
    explain.add_argument("attribute", help="the attribute name, e.g. spikes")
    explain.add_argument(
        "--type",
        required=True,
        help="the component's type: its full name (mymodel.Network) or, as in ls --type, "
        "a unique ending (Network)",
    )
    explain.add_argument(
        "--version",
        default=None,
        help="the component's version (default: compare with every stored version)",
    )
    explain.add_argument("--parameters", default="{}", help="the parameters as JSON, or @file.json")
    explain.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="KEY",
        help="the key (or prefix) of a stored input component; repeatable",
    )
    explain.add_argument("--limit", type=int, default=3, help="closest components to show")

    demo = command(
        "demo",
        "run a small simulation pipeline twice; the second run comes from the store",
        "Run a small simulation pipeline twice against a store (the embedded SQLite "
        "default unless --url says otherwise) and print, for each run, the wall time and "
        "the store's hits and misses.",
        json_output=False,
    )
    where = demo.add_mutually_exclusive_group()
    where.add_argument(
        "--dir", help="keep the SQLite store in this directory (default: a temporary one)"
    )
    where.add_argument("--url", help="use this store URL instead (sqlite:///..., file:///...)")
    return parser


def _progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: on a terminal, for 1,000 entries or more)",
    )


# -- running --------------------------------------------------------------------------------
