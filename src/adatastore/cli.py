"""The ``adatastore`` command (also ``python -m adatastore``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import DataStoreError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adatastore", description="Look into and manage adatastore stores."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run a small simulation pipeline twice; the second run comes from the store",
        description="Run a small simulation pipeline twice against a store (the embedded "
        "SQLite default unless --url says otherwise) and print, for each run, the wall "
        "time and the store's hits and misses.",
    )
    where = demo.add_mutually_exclusive_group()
    where.add_argument(
        "--dir", help="keep the SQLite store in this directory (default: a temporary one)"
    )
    where.add_argument("--url", help="use this store URL instead (sqlite:///..., file:///...)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run_demo

            run_demo(directory=args.dir, url=args.url)
    except DataStoreError as error:
        print(f"adatastore: error: {error}", file=sys.stderr)
        return 2
    return 0
