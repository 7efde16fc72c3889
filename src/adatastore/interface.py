"""The original module's ``interface``: `AbstractDataStore`, the base of its back-ends.

A script written for NeuroTools' ``datastore`` may subclass it for a back-end of its own
(implementing ``store`` and ``retrieve``) or test ``isinstance(store, AbstractDataStore)``;
both keep working: every blocking store here is one. New back-ends are written for
`adatastore.AsyncDataStore` instead (see the back-ends page of the documentation).
"""

from __future__ import annotations

from typing import Any

__all__ = ["AbstractDataStore"]


class AbstractDataStore:
    """Abstract base class for a persistent data store (the original's, blocking)."""

    def retrieve(self, component: Any, attribute_name: str) -> Any:
        """Retrieve data belonging to a component; None when there is none."""
        raise NotImplementedError

    def store(self, component: Any, attribute_name: str, data: Any) -> None:
        """Store data belonging to a component."""
        raise NotImplementedError
