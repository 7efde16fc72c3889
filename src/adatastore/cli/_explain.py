"""What ``adatastore explain`` asks about: components rebuilt from their description (a
type name, a version, parameters) or from stored component records, inputs included."""

from __future__ import annotations

from typing import Any

from ..records import ComponentRecord
from ._text import UsageError

__all__ = ["Described", "rebuild", "resolve_type"]


def resolve_type(wanted: str, stored: set[str]) -> str:
    """The stored type `wanted` names: itself, or the one stored type ending in it (as
    ``ls --type`` matches); several candidates are an error that lists them."""
    if wanted in stored:
        return wanted
    matches = sorted(kind for kind in stored if kind.endswith("." + wanted))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"--type {wanted!r} matches several stored types: {', '.join(matches)}")
    return wanted


class Described:
    """A component rebuilt from a description: its type name, version, parameters, inputs."""

    parameters: Any
    input: Any
    version: Any

    @staticmethod
    def make(full_type: str, version: str, parameters: Any, inputs: list[Any]) -> Any:
        module, _, name = full_type.rpartition(".")
        kind = type(name, (Described,), {"__module__": module, "__qualname__": name})
        component = kind()
        component.parameters = parameters
        component.version = version
        component.input = None if not inputs else inputs[0] if len(inputs) == 1 else inputs
        return component


def rebuild(known: dict[str, ComponentRecord], record: ComponentRecord) -> Any:
    """A component standing for a stored record, its inputs rebuilt from theirs.

    Iterative and memoised: a chain of thousands of time steps does not recurse, and an
    input shared by several components is rebuilt once (a DAG stays a DAG).
    """
    built: dict[str, Any] = {}
    visiting: set[str] = set()
    stack: list[tuple[ComponentRecord, bool]] = [(record, False)]
    while stack:
        current, inputs_ready = stack.pop()
        if current.key in built:
            continue
        if not inputs_ready:
            if current.key in visiting:
                raise UsageError(f"the stored inputs of {current.key[:12]} form a cycle")
            visiting.add(current.key)
            stack.append((current, True))
            for key in current.input_keys:
                if key not in known:
                    raise UsageError(f"input {key[:12]} of {current.key[:12]} is not stored here")
                if key not in built:
                    stack.append((known[key], False))
            continue
        inputs = [built[key] for key in current.input_keys]
        built[current.key] = Described.make(
            current.full_type, current.version, current.parameters, inputs
        )
    return built[record.key]
