"""Whether a stored entry still stands: made by the code there is now (`StaleCodeWarning`,
`stale_reason`), and not past its expiry or the store's `max_age` (`is_expired`).

Both look at the provenance in the record's header. On a hit (`hit_state`) they read it
at the offsets `Provenance.to_json` writes ``expires``, ``code`` and ``compute_code`` at
(0.43 µs a hit; substring searches took 0.84); the JSON is parsed only for an entry with
an expiry, in a store with `max_age`, or when the hashes differ (other code, or another
compute function: `stale_reason` tells which).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Awaitable, Callable, Sequence
from types import ModuleType
from typing import Any

import anyio.to_thread

from .._codec import record as _record
from .._keys.fingerprints import (
    UNKNOWN,
    CodePrint,
    class_print,
    compute_print,
    compute_token,
    is_known,
    token,
    tokens,
)
from .._runtime.clock import clock
from .._runtime.user_warnings import warn_user
from ..component import full_type, walk_inputs
from ..errors import StaleCodeWarning
from ..provenance import CodeOrigin, Provenance
from ..records import Entry
from .policy import Policy

__all__ = [
    "EXPIRED",
    "LEARN",
    "STANDS",
    "all_known",
    "code_known",
    "code_origin",
    "current_print",
    "hit_state",
    "is_expired",
    "learn",
    "learn_all",
    "stale_entries",
    "stale_reason",
    "warn_if_stale",
]

_warned: set[object] = set()
"""Component types a `StaleCodeWarning` was issued for in this process."""


def component_class(component: object) -> object:
    return component if isinstance(component, ModuleType) else type(component)


def learn(component: object, compute: Callable[..., Any] | None, graph: bool) -> None:
    """Compute (and cache) the fingerprints of `component`'s type, of `compute`, and with
    `graph` of its inputs' types: file I/O, run off the event loop."""
    class_print(component_class(component))
    compute_print(compute)
    if graph:
        for node in walk_inputs(component):
            class_print(component_class(node))


def learn_all(components: list[object]) -> None:
    """`learn` each component's graph (a worker thread's job)."""
    for component in components:
        learn(component, None, True)


def all_known(component: object) -> bool:
    """Whether the fingerprints of `component`'s type and its inputs' are cached."""
    if getattr(component, "input", None) is None:
        return is_known(component_class(component))
    return all(is_known(component_class(node)) for node in walk_inputs(component))


_ORIGINS: dict[object, CodeOrigin] = {}
"""`code_origin` of stores without a compute function, by component type."""


def code_origin(component: object, compute: Callable[..., Any] | None) -> CodeOrigin:
    """What a new entry's provenance says of its code (fingerprints cached: `learn`);
    for a plain store one dict lookup."""
    if compute is None:
        found = _ORIGINS.get(type(component))
        if found is not None:
            return found
    cls = component_class(component)
    printed = class_print(cls)
    origin: CodeOrigin = (
        (None, compute_print(compute), None)
        if printed is None
        else (printed.source, compute_print(compute), printed.commit)
    )
    if compute is None and cls is type(component):
        _ORIGINS[cls] = origin
    return origin


STANDS, EXPIRED, LEARN = 0, 1, 2
"""What `hit_state` says of a hit: it stands, it has expired, or a fingerprint must be
computed first (file I/O: off the event loop, then ask again)."""


def hit_state(
    policy: Policy,
    component: object,
    compute: Callable[..., Any] | None,
    header: _record.Header,
) -> int:
    """Whether a hit stands (`STANDS`; warning once per type when it was made by other
    code: `StaleCodeWarning`), has `EXPIRED` (its own expiry, or the store's `max_age`),
    or needs a fingerprint first (`LEARN`). A plain function, not a generator step; the
    common case reads the provenance JSON at the offsets `Provenance.to_json` writes its
    fields at, and looks up dicts (~0.5 µs, 3-4% of an in-memory hit; the JSON is parsed
    only for an entry with an expiry, in a store with `max_age`, or made by other
    code)."""
    provenance = header.provenance_json
    if provenance is None or len(provenance) < 8:
        return STANDS
    first = provenance[2]  # the first key's first letter: expires, code, compute_code
    if (first == _E or policy.max_age is not None) and is_expired(header, policy.max_age):
        return EXPIRED
    if not policy.warn_stale_code or component is None:
        return STANDS
    cls = component if isinstance(component, ModuleType) else type(component)
    if cls in _warned:
        return STANDS
    found = _TOKENS.get(cls, UNKNOWN)
    computed = None if compute is None else compute_token(compute)
    if found is UNKNOWN or computed is UNKNOWN:
        return LEARN
    if first == _E:
        return _checked(component, compute, provenance)
    at = 1  # after "{": "code", then "compute_code", each when recorded
    if first == _C and provenance[4] == _D:  # "code"
        if found is not None and not provenance.startswith(found, 1):
            return _checked(component, compute, provenance)
        at = provenance.find(b",", 1) + 1
    if computed is None or provenance.startswith(computed, at):
        return STANDS
    if provenance.startswith(b'"compute_code"', at):
        return _checked(component, compute, provenance)
    return STANDS


_E, _C, _D = ord("e"), ord("c"), ord("d")
_TOKENS = tokens()


def _checked(component: object, compute: Callable[..., Any] | None, provenance: bytes) -> int:
    warn_if_stale(component, compute, provenance)
    return STANDS


def code_known(component: object, compute: Callable[..., Any] | None, graph: bool) -> bool:
    """Whether what a write (or a code-keyed read: `graph`) needs of the code is cached."""
    cls = component if isinstance(component, ModuleType) else type(component)
    if token(cls) is UNKNOWN or (compute is not None and compute_token(compute) is UNKNOWN):
        return False
    return not graph or all_known(component)


def warn_if_stale(
    component: object, compute: Callable[..., Any] | None, provenance_json: bytes
) -> bool:
    """Whether the entry was made by other code; issue a `StaleCodeWarning` then (once
    per type), pointing at the user's line that asked. The fingerprints must be known
    (`code_known`)."""
    printed = class_print(component_class(component))
    computed = compute_print(compute)
    if (printed is None or f'"code":"{printed.source}"'.encode() in provenance_json) and (
        computed is None or f'"compute_code":"{computed[1]}"'.encode() in provenance_json
    ):
        return False
    try:
        provenance = Provenance.from_json(_record.parse_provenance(provenance_json) or {})
    except ValueError:
        return False
    reason = stale_reason(component, compute, provenance)
    if reason is None:
        return False
    if component_class(component) not in _warned:
        _warned.add(component_class(component))
        warn_user(reason, StaleCodeWarning)
    return True


def stale_reason(
    component: object, compute: Callable[..., Any] | None, provenance: Provenance
) -> str | None:
    """Why an entry was made by other code than `component`'s (and `compute`'s) now,
    under the same version; None when it was not, or when it cannot be told (no
    fingerprint recorded, or no source now)."""
    printed = class_print(component_class(component))
    computed = compute_print(compute)
    what = []
    if printed is not None and provenance.code is not None and provenance.code != printed.source:
        what.append(f"the code of {full_type(component)}")
    if (
        computed is not None
        and provenance.compute_name == computed[0]
        and provenance.compute_code not in (None, computed[1])
    ):
        what.append(f"its compute function {computed[0]}")
    if not what:
        return None
    when = f"{provenance.stored_at:%Y-%m-%d}"
    if provenance.commit:
        when += f", commit {provenance.commit[:12]}"
    version = getattr(component, "version", None)
    return (
        f"{' and '.join(what)} changed since this entry was stored ({when}) but its "
        f"version is still {str(version)!r}: the entry may be stale (bump the version to "
        "recompute; the store option key_includes_code=True keys by code)"
    )


def is_expired(header: _record.Header, max_age: float | None) -> bool:
    """Whether the entry is past its own expiry or older than `max_age` seconds."""
    fields = header.provenance
    if fields is None:
        return False
    now = clock()
    expires: Any = fields.get("expires")
    if type(expires) in (int, float) and now >= expires:
        return True
    stored_at: Any = fields.get("stored_at")
    return max_age is not None and type(stored_at) in (int, float) and now - stored_at > max_age


def current_print(full_type: str) -> CodePrint | None:
    """The fingerprint of the code a stored type name names now: its module imported
    (which runs the module's import-time code: the command line asks first), None when
    it cannot be imported or has no source."""
    parts = full_type.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:split]))
            for name in parts[split:]:
                found = getattr(found, name)
        except Exception:
            continue
        if isinstance(found, type | ModuleType):
            return class_print(found)
        return None
    if len(parts) == 1:  # a module used as a component
        with contextlib.suppress(Exception):
            return class_print(importlib.import_module(full_type))
    return None


async def stale_entries(
    read_provenance: Callable[[str, str], Awaitable[Provenance | None]],
    entries: Sequence[Entry],
) -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """Which entries were made by other code than their type's now, and why (their
    provenance's fingerprint against the code imported now; see `current_print`); and
    the types that could not be checked, and why (a class of a script's ``__main__``,
    which no other program can import; a module that does not import here)."""
    by_type: dict[str, list[Entry]] = {}
    for entry in entries:
        by_type.setdefault(entry.full_type, []).append(entry)
    found: dict[tuple[str, str], str] = {}
    unchecked: dict[str, str] = {}
    for kind, group in sorted(by_type.items()):
        if kind.split(".", 1)[0] in ("__main__", "__mp_main__"):
            unchecked[kind] = (
                f"{_entries(len(group))} of {kind}: a class defined in a script's __main__ "
                "cannot be imported by another program; check them from the script itself "
                "(store.explain(component, name); retrieve, get_or_compute and warm warn "
                "with StaleCodeWarning)"
            )
            continue
        printed = await anyio.to_thread.run_sync(current_print, kind)
        if printed is None:
            if kind and not await anyio.to_thread.run_sync(_importable, kind):
                unchecked[kind] = (
                    f"{_entries(len(group))} of {kind}: its module does not import here"
                )
            continue
        for entry in group:
            provenance = await read_provenance(entry.key, entry.attribute_name)
            if provenance is None or provenance.code in (None, printed.source):
                continue
            when = f"{provenance.stored_at:%Y-%m-%d}"
            if provenance.commit:
                when += f" at commit {provenance.commit[:12]}"
            found[entry.key, entry.attribute_name] = f"code changed since stored ({when})"
    return found, unchecked


def _entries(count: int) -> str:
    return f"{count} entr{'y' if count == 1 else 'ies'}"


def _importable(full_type: str) -> bool:
    """Whether some prefix of a type's dotted name imports as a module."""
    parts = full_type.split(".")
    for split in range(len(parts), 0, -1):
        with contextlib.suppress(Exception):
            importlib.import_module(".".join(parts[:split]))
            return True
    return False
