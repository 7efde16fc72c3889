"""Who a component is: its key, and the record of it a back-end keeps (from one walk).

A key generator turns a component (its type, version, parameters and inputs) into the
key its entries are filed under. `Identity.keyed` gives the key *and* the component
record (type, version, described parameters, input keys) from one walk of the inputs:
the record is what back-ends keep for listing and `explain`, and only writes need it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._keys.fingerprints import code_key
from ..component import check_component, full_type, inputs_of, walk_inputs
from ..errors import ConfigurationError, InvalidKeyError, InvalidNameError
from ..keygenerators import KeyGenerator, describe_parameters, graph_keys
from ..records import ComponentRecord, storable_text

__all__ = [
    "MAX_ATTRIBUTE_NAME_LENGTH",
    "Identity",
    "check_attribute_name",
    "check_key",
    "component_record",
]

MAX_ATTRIBUTE_NAME_LENGTH = 255
"""Attribute names longer than this many characters are refused."""


class Identity:
    """Keys and component records, by one key generator."""

    __slots__ = ("code", "key_generator")

    def __init__(self, key_generator: KeyGenerator, code: bool = False) -> None:
        if not callable(key_generator):
            raise ConfigurationError(
                f"key_generator must be callable, not a {type(key_generator).__name__}"
            )
        self.key_generator = key_generator
        self.code = code
        """Whether keys include the code fingerprints (``key_includes_code=True``)."""

    def key(self, component: object) -> str:
        """The key `component` is filed under."""
        check_component(component)
        key = check_key(self.key_generator(component), self.key_generator)
        return code_key(key, component) if self.code else key

    def keyed(self, component: object) -> tuple[str, ComponentRecord]:
        """The key and the component record, the inputs walked once."""
        node: Any = check_component(component)
        if node.input is None:
            key = check_key(self.key_generator(node), self.key_generator)
            if self.code:
                key = code_key(key, node)
            input_keys: tuple[str, ...] = ()
        else:
            keys = self.graph_keys(node)
            key = keys[id(node)]
            input_keys = tuple(keys[id(item)] for item in inputs_of(node))
        return key, component_record(node, key, input_keys)

    def graph_keys(self, component: Any) -> dict[int, str]:
        """The keys of a (checked) component and of its inputs, by ``id``; the
        component's own key checked."""
        keys = graph_keys(self.key_generator, component)
        keys[id(component)] = check_key(keys[id(component)], self.key_generator)
        if self.code:
            for node in walk_inputs(component):
                keys[id(node)] = code_key(str(keys[id(node)]), node)
        return keys

    def pairs(self, requests: Iterable[tuple[object, str]]) -> list[tuple[str, str]]:
        """(key, attribute name) of each (component, attribute name), all checked first."""
        return [(self.key(component), check_attribute_name(name)) for component, name in requests]


def component_record(component: Any, key: str, input_keys: tuple[str, ...]) -> ComponentRecord:
    """What back-ends keep about a (checked) component besides its data."""
    return ComponentRecord(
        key=key,
        full_type=full_type(component),
        version=storable_text(str(component.version)),
        parameters=describe_parameters(component.parameters),
        input_keys=input_keys,
    )


def check_attribute_name(name: object) -> str:
    """Return `name` if it is a usable attribute name, else raise `InvalidNameError`.

    Checked on every operation: the common name (printable ASCII) takes three string
    methods, not a scan per character (~2,000 instructions less a retrieve, callgrind).
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"attribute name must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidNameError("attribute name must not be empty")
    if len(name) > MAX_ATTRIBUTE_NAME_LENGTH:
        raise InvalidNameError(
            f"attribute name is {len(name)} characters long; "
            f"the limit is {MAX_ATTRIBUTE_NAME_LENGTH}"
        )
    if not name.isprintable() and any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidNameError(
            f"attribute name {name!r} contains a control character (NUL, newline, ...)"
        )
    if "/" in name or "\\" in name or ".." in name or name == ".":
        raise InvalidNameError(
            f"attribute name {name!r} looks like a path ('/', '\\', '..' or '.'); "
            "attribute names are plain names such as 'spikes' or 'rates.excitatory'"
        )
    if not name.isascii():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidNameError(
                f"attribute name {name!r} is not valid Unicode (it holds a lone surrogate)"
            ) from None
    return name


def check_key(key: object, generator: object) -> str:
    """Return `key` if the key generator's result is usable, else raise `InvalidKeyError`."""
    if isinstance(key, str) and key and key.isascii() and "\0" not in key:
        return key  # the common case (every built-in generator makes ASCII keys)
    name = getattr(generator, "__qualname__", repr(generator))
    if not isinstance(key, str):
        raise InvalidKeyError(
            f"key generator {name} returned a {type(key).__name__}; keys must be strings"
        )
    if not key or "\0" in key:
        raise InvalidKeyError(f"key generator {name} returned an empty key or one with NUL")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKeyError(
            f"key generator {name} returned a key that is not valid Unicode"
        ) from None
    return key
