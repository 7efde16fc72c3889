"""Components used by the tests (a module of its own so subprocesses can import it)."""

from __future__ import annotations

from typing import Any

from parameters import ParameterSet


class SimpleComponent:
    """The component of the original tutorial: parameters, one input or a list, a version."""

    version = "$Revision: 1 $"

    def __init__(self, parameters: Any, input: Any = None, version: Any = None) -> None:
        self.parameters = (
            parameters if isinstance(parameters, ParameterSet) else ParameterSet(parameters)
        )
        self.input = input
        if version is not None:
            self.version = version


class OtherComponent(SimpleComponent):
    """Same attributes, another type: must never share entries with SimpleComponent."""


class PlainComponent:
    """A component whose parameters are a plain dict."""

    def __init__(self, parameters: dict[str, Any], input: Any = None, version: Any = 1) -> None:
        self.parameters = parameters
        self.input = input
        self.version = version


def square_of_n(component: PlainComponent) -> int:
    """A module-level compute function: picklable, so it can run in a worker process."""
    return int(component.parameters["n"]) ** 2


def quick_or_long(component: PlainComponent) -> int:
    """A compute function for worker processes: components 0 and 1 at once, the others
    as a long computation would (a minute; the tests interrupt it)."""
    import time

    n = int(component.parameters["n"])
    if n >= 2:
        time.sleep(60)
    return n
