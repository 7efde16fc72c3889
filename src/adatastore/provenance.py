"""Where an entry came from, and why a lookup missed.

Every record carries its `Provenance` in its header: when and where it was stored (host,
user, Python and adatastore versions) and how long its computation took when the store
knows (`get_or_compute`, `warm`, `@cached`). `AsyncDataStore.explain` uses it for a hit;
for a miss it compares the component with the stored components of the same type and
reports, for the closest ones, exactly what differs: the version, each parameter path with
both values, and each input.
"""

from __future__ import annotations

import getpass
import math
import os
import platform
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from ._runtime.clock import clock
from ._version import __version__

__all__ = ["Candidate", "Difference", "Explanation", "Provenance", "diff_parameters"]

_HEX = re.compile(r"[0-9a-f]{1,64}")


@dataclass(frozen=True, slots=True)
class Provenance:
    """When and where an entry was stored."""

    stored_at: datetime
    host: str
    user: str
    python: str
    adatastore: str
    compute_seconds: float | None = None
    """How long the computation took, when the store ran it (None otherwise)."""
    code: str | None = None
    """A hash of the component type's source when it was stored (None: unknown)."""
    compute_code: str | None = None
    """A hash of the compute function's source (`get_or_compute`, `warm`, ``@cached``)."""
    compute_name: str | None = None
    """The compute function's ``module.qualname``: a change of its source under the same
    name is a code change (another function is just another caller)."""
    commit: str | None = None
    """The git commit checked out where the component's module lived, if any."""
    expires: float | None = None
    """When the entry expires (``store(..., expire=...)``), in seconds since the epoch."""

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON, in an order hits rely on: ``expires`` first, then ``code``
        and ``compute_code``, when present (a hit checks them with ``startswith`` at
        known offsets: ~70 ns, where a substring search took ~450 ns)."""
        fields: dict[str, Any] = {}
        if self.expires is not None:
            fields["expires"] = self.expires
        if self.code is not None:
            fields["code"] = self.code
        if self.compute_code is not None:
            fields["compute_code"] = self.compute_code
        fields["stored_at"] = self.stored_at.timestamp()
        fields["host"] = self.host
        fields["user"] = self.user
        fields["python"] = self.python
        fields["adatastore"] = self.adatastore
        fields["compute_seconds"] = self.compute_seconds
        if self.compute_name is not None:
            fields["compute_name"] = self.compute_name
        if self.commit is not None:
            fields["commit"] = self.commit
        return fields

    @classmethod
    def from_json(cls, fields: Mapping[str, Any]) -> Provenance:
        """Parse what `to_json` wrote; `ValueError` for anything else (every field is
        checked: records come from storage that others may write)."""
        stored_at: Any = fields.get("stored_at")
        seconds: Any = fields.get("compute_seconds")
        if not _number(stored_at) or not 0 <= stored_at < 253402300800:  # before year 10000
            raise ValueError(f"provenance: 'stored_at' is not a time: {stored_at!r}")
        if seconds is not None and (not _number(seconds) or seconds < 0):
            raise ValueError(f"provenance: 'compute_seconds' is not a duration: {seconds!r}")
        texts = {}
        for name in ("host", "user", "python", "adatastore"):
            value = fields.get(name, "")
            if not isinstance(value, str) or len(value) > 1024:
                raise ValueError(f"provenance: {name!r} is not a short text")
            texts[name] = value
        hashes: dict[str, Any] = {}
        for name in ("code", "compute_code", "commit"):
            value = fields.get(name)
            if value is not None and not (isinstance(value, str) and _HEX.fullmatch(value)):
                raise ValueError(f"provenance: {name!r} is not a hash")
            hashes[name] = value
        compute_name: Any = fields.get("compute_name")
        if compute_name is not None and not (
            isinstance(compute_name, str) and len(compute_name) <= 1024
        ):
            raise ValueError("provenance: 'compute_name' is not a short text")
        expires: Any = fields.get("expires")
        if expires is not None and not _number(expires):
            raise ValueError(f"provenance: 'expires' is not a time: {expires!r}")
        return cls(
            stored_at=datetime.fromtimestamp(float(stored_at), UTC),
            compute_seconds=None if seconds is None else float(seconds),
            expires=None if expires is None else float(expires),
            compute_name=compute_name,
            **texts,
            **hashes,
        )

    def describe(self) -> str:
        text = (
            f"stored {self.stored_at:%Y-%m-%d %H:%M:%S} UTC by {self.user or '?'}@"
            f"{self.host or '?'} (Python {self.python}, adatastore {self.adatastore})"
        )
        if self.compute_seconds is not None:
            text += f", computed in {self.compute_seconds:.3g} s"
        if self.commit is not None:
            text += f", at commit {self.commit[:12]}"
        return text


def _number(value: object) -> bool:
    """A finite int or float (not a bool)."""
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


@cache
def _here() -> tuple[str, str, str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else ""
    return socket.gethostname(), user, platform.python_version(), __version__


def provenance_now(
    compute_seconds: float | None = None,
    code: CodeOrigin | None = None,
    expires: float | None = None,
) -> Provenance:
    """The provenance of an entry stored now, by this process."""
    host, user, python, version = _here()
    source, computed, commit = code or (None, None, None)
    name, compute = computed or (None, None)
    now = datetime.fromtimestamp(clock(), UTC)
    return Provenance(
        now, host, user, python, version, compute_seconds, source, compute, name, commit, expires
    )


CodeOrigin = tuple[str | None, tuple[str, str] | None, str | None]
"""(hash of the component type's source, the compute function's name and source hash,
git commit)."""


_ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "<absent>"})()


@dataclass(frozen=True, slots=True)
class Difference:
    """One way a stored component differs from the one asked for."""

    path: str
    """``version``, a parameter path such as ``parameters.model.tau``, or ``input[0]``."""
    wanted: Any
    """The value in the component asked for (``<absent>`` when it has none there)."""
    stored: Any
    """The value in the stored component (``<absent>`` when it has none there)."""

    def describe(self) -> str:
        return f"{self.path}: asked {shown(self.wanted)}, stored {shown(self.stored)}"


_LEAVES = ("quantity", "repr", "ndarray")
"""The one-key mappings `describe_parameters` writes for values it describes whole."""


def _leaf(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in _LEAVES


def shown(value: Any) -> str:
    """A described parameter value as people read it: a quantity with its unit
    (``10. ms``), an array by dtype, shape and its few values, anything else as repr."""
    if _leaf(value):
        ((kind, what),) = value.items()
        if kind in ("quantity", "repr"):
            return str(what)
        if isinstance(what, Mapping):
            values = f" {what['values']}" if "values" in what else ""
            return f"array {what.get('dtype')} {tuple(what.get('shape') or ())}{values}"
    return repr(value)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stored component of the same type (or class name), and how it differs."""

    key: str
    attribute_names: tuple[str, ...]
    """Its stored attributes."""
    differences: tuple[Difference, ...]


@dataclass(frozen=True, slots=True)
class Explanation:
    """What `AsyncDataStore.explain` found."""

    key: str
    attribute_name: str
    full_type: str
    hit: bool
    provenance: Provenance | None = None
    """For a hit: where the entry came from (None for entries written before 0.2)."""
    candidates: tuple[Candidate, ...] = field(default=())
    """For a miss: the closest stored components of the same type, closest first (and
    those of the same class name in another module, with a ``type`` difference)."""
    same_component_attributes: tuple[str, ...] = field(default=())
    """For a miss: other attributes stored for this very component (a wrong name?)."""
    code_changed: str | None = None
    """For a hit: what says the entry was made by other code than the component type's
    now under the same version (see "Keeping a cache healthy"), or None."""

    def __str__(self) -> str:
        if self.hit:
            where = self.provenance.describe() if self.provenance else "no provenance recorded"
            text = f"hit: {self.attribute_name!r} of {self.full_type} {self.key[:12]}: {where}"
            return text if self.code_changed is None else f"{text}\n  {self.code_changed}"
        lines = [f"miss: {self.attribute_name!r} of {self.full_type} {self.key[:12]}"]
        if self.same_component_attributes:
            names = ", ".join(repr(name) for name in self.same_component_attributes)
            lines.append(f"  this component is stored, with other attributes: {names}")
        if not self.candidates and not self.same_component_attributes:
            lines.append(f"  nothing of type {self.full_type} is stored")
        for candidate in self.candidates:
            names = ", ".join(repr(name) for name in candidate.attribute_names)
            count = len(candidate.differences)
            lines.append(
                f"  stored {candidate.key[:12]} ({names}) differs in {count} "
                f"place{'s' if count != 1 else ''}:"
            )
            lines += [f"    {difference.describe()}" for difference in candidate.differences]
        return "\n".join(lines)


def diff_parameters(wanted: Any, stored: Any, path: str = "parameters") -> list[Difference]:
    """The leaves where two described parameter trees differ, with their paths.

    Mappings are compared key by key (a key on one side only is a difference), sequences
    of the same length item by item; anything else is compared whole, type included
    (``1`` and ``1.0`` make different keys).
    """
    if (
        isinstance(wanted, Mapping)
        and isinstance(stored, Mapping)
        and not (_leaf(wanted) or _leaf(stored))  # a quantity or an array: one value
    ):
        differences = []
        for name in sorted(set(wanted) | set(stored), key=str):
            inner = f"{path}.{name}"
            if name not in stored:
                differences.append(Difference(inner, wanted[name], _ABSENT))
            elif name not in wanted:
                differences.append(Difference(inner, _ABSENT, stored[name]))
            else:
                differences += diff_parameters(wanted[name], stored[name], inner)
        return differences
    if _is_sequence(wanted) and _is_sequence(stored) and len(wanted) == len(stored):
        differences = []
        for index, (left, right) in enumerate(zip(wanted, stored, strict=True)):
            differences += diff_parameters(left, right, f"{path}[{index}]")
        return differences
    if type(wanted) is not type(stored) or wanted != stored:
        return [Difference(path, wanted, stored)]
    return []


def _is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def diff_components(
    version: str,
    parameters: Any,
    input_keys: Sequence[str],
    stored_version: str,
    stored_parameters: Any,
    stored_input_keys: Sequence[str],
) -> list[Difference]:
    """Every difference between a component (described) and a stored component record."""
    differences = []
    if version != stored_version:
        differences.append(Difference("version", version, stored_version))
    differences += diff_parameters(parameters, stored_parameters)
    for index in range(max(len(input_keys), len(stored_input_keys))):
        left = input_keys[index] if index < len(input_keys) else _ABSENT
        right = stored_input_keys[index] if index < len(stored_input_keys) else _ABSENT
        if left != right:
            differences.append(Difference(f"input[{index}]", left, right))
    return differences
