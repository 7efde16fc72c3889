"""When data items were last read (``DataItem.used_at``), for the stores' limits: a batch
of reads is one UPDATE per attribute name, setting the batch's latest time (coarse: an
entry read a minute apart from its batch-mates counts from the batch's end)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from ...backend import Used
from .._used_logs import skipped_notes
from ._rows import digest

__all__ = ["ReadTimes"]

T = TypeVar("T")


class ReadTimes:
    """`touch_many` and `last_used` of the Django back-end (a base of `DjangoBackend`)."""

    alias: str | None

    async def _orm(self, function: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError  # pragma: no cover - DjangoBackend's

    async def touch_many(self, used: Sequence[Used]) -> None:
        await self._orm(self._touch, used)

    async def last_used(self) -> dict[tuple[str, str], float]:
        return await self._orm(self._last_used)

    def _touch(self, used: Sequence[Used]) -> None:
        from django.db import transaction
        from django.db.models import Q

        from .models import DataItem

        by_name: dict[str, list[str]] = {}
        latest = max((when for _, _, when in used), default=0.0)
        for key, name, _ in used:
            by_name.setdefault(name, []).append(digest(key))
        when = datetime.fromtimestamp(latest, UTC)
        with transaction.atomic(using=self.alias):
            for name, digests in by_name.items():
                for start in range(0, len(digests), 500):
                    DataItem.objects.using(self.alias).filter(
                        Q(used_at__isnull=True) | Q(used_at__lt=when),
                        attribute=name,
                        state__key_digest__in=digests[start : start + 500],
                    ).update(used_at=when)

    def _last_used(self) -> dict[tuple[str, str], float]:
        """The read times noted; a value the database holds but Python cannot take (a
        planted TEXT in SQLite's column, a year beyond 9999) is skipped and logged, never
        fatal: the notes only order eviction. Such a value fails the whole query, so the
        rows are then read again a batch at a time, and the failing batch's one by one."""
        from django.db import DataError

        from .models import DataItem

        unreadable = (ValueError, TypeError, AttributeError, OverflowError, DataError)
        items = DataItem.objects.using(self.alias).filter(used_at__isnull=False)

        def notes(rows: Any) -> dict[tuple[str, str], float]:
            return _notes(rows.values_list("state__key", "attribute", "used_at"))

        try:
            return notes(items)
        except unreadable:
            pass
        found: dict[tuple[str, str], float] = {}
        skipped = 0
        pks = list(items.values_list("pk", flat=True))
        for start in range(0, len(pks), 500):
            batch = pks[start : start + 500]
            try:
                found |= notes(items.filter(pk__in=batch))
            except unreadable:
                for pk in batch:
                    try:
                        found |= notes(items.filter(pk=pk))
                    except unreadable:
                        skipped += 1
        skipped_notes(skipped, "adatastore_dataitem.used_at")
        return found


def _notes(rows: Any) -> dict[tuple[str, str], float]:
    found = {}
    for key, name, when in rows:
        if not isinstance(when, datetime):
            raise TypeError(when)
        if when.tzinfo is None:  # a project with USE_TZ = False stores UTC
            when = when.replace(tzinfo=UTC)
        found[str(key), str(name)] = when.timestamp()
    return found
