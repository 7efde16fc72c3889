"""What a component is, and walking the graph of its inputs.

A component is any object with three attributes:

``parameters``
    a mapping (the ``parameters`` package's ``ParameterSet``, or a plain ``dict``), nested;
``input``
    another component, a list or tuple of components, or ``None``;
``version``
    the version of the code that computes it (a string or a number).

Inputs form a directed acyclic graph: a component may be shared by several others, but no
component may be its own direct or indirect input.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from .errors import ComponentError

__all__ = ["Component", "check_component", "full_type", "inputs_of", "walk_inputs"]

_REQUIRED = ("parameters", "input", "version")


@runtime_checkable
class Component(Protocol):
    """The structural type of a component; no base class is needed."""

    parameters: Mapping[str, Any]
    input: Any
    version: Any


def full_type(component: object) -> str:
    """Return the component's type as ``module.QualifiedName`` (a module gives its name).

    A class defined in a script is ``__main__.X`` in the script's process but
    ``__mp_main__.X`` in its spawn and forkserver workers (multiprocessing imports the
    script under that name there): both are ``__main__.X`` here, so workers and parent
    file a component under the same key, as ``pickle`` treats them as one class.
    """
    if isinstance(component, types.ModuleType):
        name: str = component.__name__
        return "__main__" if name == "__mp_main__" else name
    cls = type(component)
    module = cls.__module__
    if module == "__mp_main__":
        module = "__main__"
    return f"{module}.{cls.__qualname__}"


def check_component(component: object) -> Component:
    """Return `component` if it has the three attributes, else raise `ComponentError`."""
    for name in _REQUIRED:
        try:
            getattr(component, name)
        except AttributeError:
            if hasattr(type(component), name):
                raise  # raised inside the component's own property: its own error
            raise ComponentError(
                f"{full_type(component)} object is not a component: "
                f"it has no {name!r} attribute (a component needs "
                "'parameters', 'input' and 'version')"
            ) from None
    parameters = component.parameters  # type: ignore[attr-defined]
    if not isinstance(parameters, Mapping):
        raise ComponentError(
            f"{full_type(component)}.parameters must be a mapping (a ParameterSet or a dict), "
            f"not {type(parameters).__name__}"
        )
    return component  # type: ignore[return-value]


def inputs_of(component: Component) -> tuple[Component, ...]:
    """Return the direct inputs of a component as a tuple (empty when ``input`` is None)."""
    value = component.input
    if value is None:
        return ()
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items = tuple(value)
    else:
        items = (value,)
    for item in items:
        if item is None:
            raise ComponentError(
                f"{full_type(component)}.input holds None inside a list; "
                "use input=None for a component without inputs"
            )
        check_component(item)
    return items


def walk_inputs(component: object) -> list[Component]:
    """Return the component and all its inputs, each once, inputs before their users.

    The walk is iterative (deep chains do not hit the recursion limit) and raises
    `ComponentError` naming the types in the cycle when a component is its own input.
    """
    root = check_component(component)
    done: set[int] = set()
    order: list[Component] = []
    on_path: dict[int, int] = {}  # id -> index in `path`
    path: list[Component] = []
    stack: list[tuple[Component, tuple[Component, ...], int]] = [(root, inputs_of(root), 0)]
    on_path[id(root)] = 0
    path.append(root)
    while stack:
        node, children, index = stack[-1]
        if index < len(children):
            stack[-1] = (node, children, index + 1)
            child = children[index]
            ident = id(child)
            if ident in done:
                continue
            if ident in on_path:
                cycle = [*path[on_path[ident] :], child]
                names = " -> ".join(full_type(c) for c in cycle)
                raise ComponentError(f"component inputs form a cycle: {names}")
            on_path[ident] = len(path)
            path.append(child)
            stack.append((child, inputs_of(child), 0))
        else:
            stack.pop()
            path.pop()
            del on_path[id(node)]
            done.add(id(node))
            order.append(node)
    return order
