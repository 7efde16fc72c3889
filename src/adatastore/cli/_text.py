"""How the ``adatastore`` command writes: tables, sizes, ages, JSON, progress bars, and
terminal-safe text (control characters a planted name could carry are escaped). Kept
apart from `adatastore.cli`, which parses and runs the sub-commands."""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO

from ..errors import ConfigurationError
from ..provenance import Explanation
from ..records import Entry

__all__ = [
    "Escaping",
    "UsageError",
    "age",
    "count",
    "duration",
    "entry_json",
    "escape_controls",
    "explanation_json",
    "human_size",
    "print_json",
    "progress_bar",
    "size",
    "table",
    "tree",
]


def count(number: int, noun: str) -> str:
    """``1 entry``, ``2 entries``."""
    if number == 1:
        return f"1 {noun}"
    return f"{number} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"


DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)


def duration(text: str) -> timedelta:
    match = DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30d, 12h or 90m")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    try:
        return timedelta(**{unit[match.group(2)]: float(match.group(1))})
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than any age") from None


def size(text: str) -> int:
    match = SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 10GB or 500MiB")
    unit = match.group(2).lower().rstrip("b")
    powers = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
    base = 1024 if unit.endswith("i") else 1000
    size = float(match.group(1)) * base ** powers[unit.rstrip("i")]
    if not math.isfinite(size) or size > 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} is larger than any store")
    return int(size)


def print_json(document: Any) -> None:
    # ASCII only: every control, bidirectional or other invisible character escaped
    print(json.dumps(document, indent=2, ensure_ascii=True, default=str))


class Escaping(io.TextIOBase):
    """A text stream that shows control and formatting characters (ESC, CSI, bidi
    overrides, ...) as escapes instead of writing them to the terminal."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.raw = stream
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(escape_controls(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()


def escape_controls(text: str) -> str:
    """`text` with every control or formatting character but newline and tab escaped."""
    if text.isprintable() or all(c.isprintable() or c in "\n\t" for c in text):
        return text
    return "".join(
        c if c.isprintable() or c in "\n\t" else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def age(moment: datetime, now: datetime) -> str:
    seconds = max((now - moment).total_seconds(), 0)
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f}{unit}"
    return f"{seconds:.0f}s"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True))]
    lines += [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "key": entry.key,
        "type": entry.full_type,
        "version": entry.version,
        "attribute": entry.attribute_name,
        "size": entry.size,
        "stored_at": entry.stored_at.isoformat(),
    }


def tree(value: Any, indent: str = "  ") -> list[str]:
    if isinstance(value, dict) and value:
        lines = []
        for name, item in value.items():
            if isinstance(item, dict) and item:
                lines.append(f"{indent}{name}:")
                lines += tree(item, indent + "  ")
            else:
                lines.append(f"{indent}{name}: {json.dumps(item, ensure_ascii=False)}")
        return lines
    return [f"{indent}{json.dumps(value, ensure_ascii=False)}"]


BAR_FROM = 1000  # entries; fewer go too fast for a bar


def progress_bar(
    wanted: bool | None, total: int, what: str = "copying"
) -> Callable[[int | None], None]:
    """A bar (at most ~10 redraws a second, with an ETA) when asked for, or by default
    when stderr is a terminal and there are many entries; else nothing."""
    stream = getattr(sys.stderr, "raw", sys.stderr)  # the bar's own control characters
    show = (stream.isatty() and total >= BAR_FROM) if wanted is None else wanted
    if not show:
        return lambda done: None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if wanted:
            raise ConfigurationError(
                "--progress needs tqdm: pip install 'adatastore[progress]'"
            ) from None
        return lambda done: None
    bar = tqdm(total=total, unit="entry", desc=what, file=stream, mininterval=0.1)

    def update(done: int | None) -> None:
        if done is None:
            bar.close()
        else:
            bar.update(done - bar.n)

    return update


def explanation_json(explanation: Explanation) -> dict[str, Any]:
    return {
        "key": explanation.key,
        "attribute": explanation.attribute_name,
        "type": explanation.full_type,
        "hit": explanation.hit,
        "provenance": None if explanation.provenance is None else explanation.provenance.to_json(),
        "same_component_attributes": list(explanation.same_component_attributes),
        "candidates": [
            {
                "key": candidate.key,
                "attributes": list(candidate.attribute_names),
                "differences": [
                    {"path": d.path, "asked": repr(d.wanted), "stored": repr(d.stored)}
                    for d in candidate.differences
                ],
            }
            for candidate in explanation.candidates
        ],
    }


class UsageError(Exception):
    """A mistake in the command line: reported in one line, exit code 2."""
