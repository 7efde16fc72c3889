"""Code fingerprints: which code made an entry, so a change without a version bump shows.

A component type's fingerprint hashes the source of its class and of the base classes
from the same top-level package (a helper base class edited counts; a library's base
does not), plus the git commit of the repository holding its module, read from the
``.git`` files (no subprocess). A compute function's fingerprint hashes its source.
Computed once per class (per function) per process: `inspect.getsource` parses the
module's file, which is file I/O, so the async paths compute it in a worker thread the
first time (``_ops``) and read the cache afterwards (a dict lookup).

Source, not bytecode: bytecode differs between Python versions, and a cache shared by a
cluster on mixed Pythons would call every entry stale. Comment-only edits therefore
count as changes (a false alarm is a warning; a missed change is a wrong result).

Classes without retrievable source (defined in a REPL or by ``exec``, C extensions)
have no fingerprint: nothing is recorded, nothing is reported, nothing fails.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import re
import stat
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..component import walk_inputs

__all__ = [
    "UNKNOWN",
    "CodePrint",
    "class_print",
    "code_key",
    "code_version",
    "compute_print",
    "compute_token",
    "git_commit",
    "is_known",
    "token",
    "tokens",
]

_HEX = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class CodePrint:
    """A component type's code as it is now: the hash of its source, and its commit."""

    source: str
    """16 hex digits of the sha256 of the sources."""
    commit: str | None
    """The git commit checked out where its module lives, or None (no repository)."""


_classes: dict[object, CodePrint | None] = {}
"""By class (or module, for a module used as a component); None: no source."""
_functions: dict[object, tuple[str, str] | None] = {}
"""By code object; None: no source."""
_commits: dict[str, str | None] = {}
"""By directory."""


def is_known(cls: object) -> bool:
    """Whether `class_print(cls)` is cached (no file I/O to get it)."""
    return cls in _classes


UNKNOWN: Any = type("Unknown", (), {"__repr__": lambda self: "<unknown>"})()
_tokens: dict[object, bytes | None] = {}
"""By class (or code object of a compute function): what a record's provenance JSON
holds when that code made it, or None (no source); filled with the fingerprints."""


def class_print(cls: object) -> CodePrint | None:
    """The fingerprint of a component type (a class, or a module), or None."""
    try:
        return _classes[cls]
    except KeyError:
        pass
    found = _class_print(cls)
    _classes[cls] = found
    _tokens[cls] = None if found is None else f'"code":"{found.source}"'.encode()
    return found


def tokens() -> dict[object, bytes | None]:
    """The tokens by class and code object (the dict itself: hits look up in it)."""
    return _tokens


def token(key: object) -> bytes | None:
    """`_tokens[key]`, or `UNKNOWN` when its fingerprint was not computed yet (a dict
    lookup: what a hit pays to check its code)."""
    return _tokens.get(key, UNKNOWN)


def compute_token(compute: Callable[..., Any]) -> bytes | None:
    """The token of a compute function (`UNKNOWN` before `compute_print`)."""
    code = _function(compute)[1]
    return None if code is None else _tokens.get(code, UNKNOWN)


def _class_print(cls: object) -> CodePrint | None:
    digest = hashlib.sha256()
    try:
        if isinstance(cls, types.ModuleType):
            digest.update(inspect.getsource(cls).encode())
            module_name = cls.__name__
        else:
            assert isinstance(cls, type)
            module_name = cls.__module__
            package = module_name.split(".")[0]
            digest.update(inspect.getsource(cls).encode())
            for base in cls.__mro__[1:]:
                if base.__module__.split(".")[0] == package and package != "builtins":
                    try:
                        digest.update(b"\0" + inspect.getsource(base).encode())
                    except (OSError, TypeError):
                        continue
    except (OSError, TypeError, SyntaxError):  # a REPL, exec, a C extension
        return None
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    commit = git_commit(os.path.dirname(os.path.abspath(path))) if path else None
    return CodePrint(digest.hexdigest()[:16], commit)


def _function(compute: object) -> tuple[object, object]:
    """(function, its code object) behind a compute callable: partials, wrappers
    (``__wrapped__``), bound methods and callable objects are looked through."""
    for _ in range(16):
        if isinstance(compute, functools.partial):
            compute = compute.func
        elif hasattr(compute, "__wrapped__"):
            compute = compute.__wrapped__
        else:
            break
    function = getattr(compute, "__func__", compute)  # a bound method
    code = getattr(function, "__code__", None)
    if code is None:
        function = type(compute).__call__  # a callable object
        code = getattr(function, "__code__", None)
    return function, code


def compute_print(compute: Callable[..., Any] | None) -> tuple[str, str] | None:
    """A compute function's name (``module.qualname``) and 16 hex digits hashing its
    source, or None (no function, or no source)."""
    if compute is None:
        return None
    function, code = _function(compute)
    if code is None:
        return None
    try:
        return _functions[code]
    except KeyError:
        pass
    try:
        source = inspect.getsource(function)  # type: ignore[arg-type]
    except (OSError, TypeError, SyntaxError):
        found = None
    else:
        name = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"
        if "<lambda>" in name:  # lambdas of one scope share a name: their line tells them apart
            name += f":{getattr(code, 'co_firstlineno', 0)}"
        found = (name[:512], hashlib.sha256(source.encode()).hexdigest()[:16])
    _functions[code] = found
    _tokens[code] = None if found is None else f'"compute_code":"{found[1]}"'.encode()
    return found


def git_commit(directory: str) -> str | None:
    """The commit checked out in the git repository holding `directory`, read from its
    files (``.git/HEAD``, the ref, ``packed-refs``; worktrees and submodules whose
    ``.git`` is a file too), or None.

    The walk goes up from `directory` to the first ``.git``, and not across a file
    system boundary (as git itself does not by default). Whoever can create a ``.git``
    in an ancestor directory chooses what is read, so only regular files are read, of a
    bounded size, opened without blocking: a FIFO planted as ``.git/HEAD`` hung every
    first store of a process forever."""
    try:
        return _commits[directory]
    except KeyError:
        pass
    found = None
    here = directory
    try:
        device = os.stat(here).st_dev
    except OSError:
        device = None
    while device is not None:
        dot_git = os.path.join(here, ".git")
        if os.path.lexists(dot_git):
            found = _head_commit(dot_git)
            break
        parent = os.path.dirname(here)
        try:
            if parent == here or os.stat(parent).st_dev != device:
                break
        except OSError:
            break
        here = parent
    _commits[directory] = found
    return found


_NO_WAIT = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)


def _read(path: str, most: int = 4096) -> str | None:
    """A regular file's first `most` bytes as text, or None: anything else (a FIFO, a
    device, a directory) is never read, and opening it never waits."""
    try:
        fd = os.open(path, _NO_WAIT)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, left = [], most
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


_PACKED_REFS_MOST = 64 << 20  # a repository with ~500,000 refs


def _head_commit(dot_git: str) -> str | None:
    git_dir = dot_git
    if os.path.isfile(dot_git):  # a worktree or submodule: "gitdir: <path>"
        text = _read(dot_git) or ""
        if not text.startswith("gitdir:"):
            return None
        git_dir = os.path.join(os.path.dirname(dot_git), text[len("gitdir:") :].strip())
    head = (_read(os.path.join(git_dir, "HEAD")) or "").strip()
    if _HEX.fullmatch(head):
        return head  # detached
    if not head.startswith("ref: "):
        return None
    ref = head[len("ref: ") :].strip()
    if ".." in ref.split("/"):
        return None
    common = (_read(os.path.join(git_dir, "commondir")) or "").strip()
    places = [git_dir] + ([os.path.join(git_dir, common)] if common else [])
    for place in places:
        value = (_read(os.path.join(place, *ref.split("/"))) or "").strip()
        if _HEX.fullmatch(value):
            return value
    for place in places:
        packed = _read(os.path.join(place, "packed-refs"), _PACKED_REFS_MOST) or ""
        for line in packed.splitlines():
            value, _, name = line.partition(" ")
            if name.strip() == ref and _HEX.fullmatch(value):
                return value
    return None


def code_version(component_type: object) -> str:
    """A version string that changes whenever the component type's source changes, for
    users who want a code change to give new keys (as joblib's cache does)::

        class Network:
            @property
            def version(self) -> str:
                return adatastore.code_version(type(self))

    ``"code:"`` and 16 hex digits; ``"code:unknown"`` when the source cannot be read
    (then it never changes: give an explicit version instead). The store option
    ``key_includes_code=True`` does the same for every component of a store.
    """
    found = class_print(component_type)
    return f"code:{found.source if found else 'unknown'}"


def code_key(key: str, component: object) -> str:
    """`key` combined with the code fingerprints of `component`'s type and its inputs'
    types (``key_includes_code=True``): a change of any of them gives another key."""
    nodes = [component] if getattr(component, "input", None) is None else walk_inputs(component)
    sources = set()
    for node in nodes:
        cls = node if isinstance(node, types.ModuleType) else type(node)
        printed = class_print(cls)
        sources.add(printed.source if printed else f"?{cls!r}")
    text = key + "\0code\0" + "\0".join(sorted(sources))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
