"""How the Django back-end writes its rows: the component's state (its type, parameters
and inputs, inserted once by whichever writer gets there first) and the data item,
upserted. Functions run in Django's ORM thread, inside the caller's transaction."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..._codec import record as _record
from ...records import (
    ComponentRecord,
    DamagedEntry,
    Entry,
    damaged_component_reason,
    json_text,
    parse_stored_json,
    same_record,
)
from ...serializers import Buffer

__all__ = [
    "Item",
    "component_records",
    "delete_items",
    "delete_listed",
    "digest",
    "first_stored",
    "remove_damaged_component",
    "size_of",
    "state_row",
    "upsert",
]


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class Item:
    """One record to store: in the database (`payload`) or in a file (`path`)."""

    key: str
    attribute: str
    payload: bytes | None
    path: str | None
    size: int
    component: ComponentRecord
    stored_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    """When the record says it was first stored (kept by copies)."""


def first_stored(record: Sequence[Buffer]) -> datetime:
    """When the record was first stored, by its provenance (now, if it does not say)."""
    seconds = _record.stored_at(record)
    return datetime.now(UTC) if seconds is None else datetime.fromtimestamp(seconds, UTC)


def size_of(record: Sequence[Buffer]) -> int:
    return sum(memoryview(buffer).nbytes for buffer in record)


def upsert(alias: str | None, item: Item) -> str | None:
    """Insert or replace one item inside the caller's transaction; return the path of
    the record file it replaced, if any."""
    from django.db import connections

    from .models import ComponentState, DataItem

    features = connections[alias].features
    # Writers and deleters of one component take its row in turn (PostgreSQL,
    # MariaDB; SQLite's transactions are serial anyway): the replaced file is known.
    # A state already there (every store but a component's first) is found and locked
    # in one query: a round trip less (a 1 KB store on PostgreSQL: 3.15 -> 3.04 ms here).
    states = ComponentState.objects.using(alias).select_for_update()
    state = states.filter(key_digest=digest(item.key)).first()
    if state is None:
        state = states.get(pk=state_row(alias, item.key, item.component).pk)
    old = (
        DataItem.objects.using(alias)
        .filter(state=state, attribute=item.attribute)
        .values_list("path", flat=True)
        .first()
    )
    DataItem.objects.using(alias).bulk_create(
        [
            DataItem(
                state=state,
                attribute=item.attribute,
                payload=item.payload,
                path=item.path,
                size=item.size,
                stored_at=item.stored_at,
            )
        ],
        update_conflicts=True,
        unique_fields=(
            ["state", "attribute"] if features.supports_update_conflicts_with_target else None
        ),
        update_fields=["payload", "path", "size", "stored_at"],
    )
    return None if old is None else str(old)


def state_row(alias: str | None, key: str, component: ComponentRecord) -> Any:
    """Return the component's state row, creating it (and its type) if needed."""
    from .models import ComponentInput, ComponentState, ComponentType

    key_digest = digest(key)
    state = ComponentState.objects.using(alias).filter(key_digest=key_digest).first()
    if state is not None:
        return state
    type_digest = digest(f"{component.full_type}\0{component.version}")
    ComponentType.objects.using(alias).bulk_create(
        [
            ComponentType(
                digest=type_digest, full_type=component.full_type, version=component.version
            )
        ],
        ignore_conflicts=True,
    )
    component_type = ComponentType.objects.using(alias).get(digest=type_digest)
    ComponentState.objects.using(alias).bulk_create(
        [
            ComponentState(
                key_digest=key_digest,
                key=key,
                component_type=component_type,
                parameters=json_text(component.parameters),
            )
        ],
        ignore_conflicts=True,
    )
    state = ComponentState.objects.using(alias).get(key_digest=key_digest)
    ComponentInput.objects.using(alias).bulk_create(
        [
            ComponentInput(
                state=state,
                position=position,
                input_key=input_key,
                input_digest=digest(input_key),
            )
            for position, input_key in enumerate(component.input_keys)
        ],
        ignore_conflicts=True,
    )
    return state


def delete_items(alias: str | None, key: str, attribute_name: str | None) -> tuple[int, list[str]]:
    """Delete one item of a component (or all of them) in one transaction, the
    component's row locked as `upsert` locks it; return how many went and the paths of
    their record files (to remove)."""
    from django.db import transaction

    from .models import ComponentState, DataItem

    with transaction.atomic(using=alias):
        state = (
            ComponentState.objects.using(alias)
            .select_for_update()
            .filter(key_digest=digest(key))
            .first()
        )
        if state is None:
            return 0, []
        items = DataItem.objects.using(alias).filter(state=state)
        if attribute_name is not None:
            items = items.filter(attribute=attribute_name)
        paths = [str(path) for path in items.values_list("path", flat=True) if path is not None]
        count, _ = items.delete()
        ComponentState.objects.using(alias).filter(pk=state.pk, items__isnull=True).delete()
    return int(count), paths


def delete_listed(alias: str | None, entries: Sequence[Entry]) -> tuple[list[Entry], list[str]]:
    """Delete the items still as listed (`same_record`) in one transaction that locks each
    component's row as `upsert` does, so an item stored again since it was listed is
    kept. Returns the entries deleted and the paths of their record files (to remove)."""
    from django.db import transaction

    from .models import ComponentState, DataItem

    gone, paths = [], []
    states = ComponentState.objects.using(alias).select_for_update()
    items = DataItem.objects.using(alias)
    with transaction.atomic(using=alias):
        for entry in entries:
            state = states.filter(key_digest=digest(entry.key)).first()
            found = (
                None
                if state is None
                else items.filter(state=state, attribute=entry.attribute_name)
                .values_list("pk", "path", "size", "stored_at")
                .first()
            )
            if found is None:
                continue
            pk, path, size, stored_at = found
            if stored_at.tzinfo is None:  # a project with USE_TZ = False stores UTC
                stored_at = stored_at.replace(tzinfo=UTC)
            if not same_record(entry, dataclasses.replace(entry, size=size, stored_at=stored_at)):
                continue
            items.filter(pk=pk).delete()
            ComponentState.objects.using(alias).filter(pk=state.pk, items__isnull=True).delete()
            gone.append(entry)
            if path is not None:
                paths.append(str(path))
    return gone, paths


def component_records(
    alias: str | None, full_type: str | None
) -> tuple[list[ComponentRecord], list[DamagedEntry]]:
    """The component records (of one type, or all), and the damage of the rows whose
    parameters do not parse (planted or damaged: `parse_stored_json`)."""
    from .models import ComponentState

    states = ComponentState.objects.using(alias).select_related("component_type")
    if full_type is not None:
        states = states.filter(component_type__full_type=full_type)
    records, damaged = [], []
    for state in states:
        try:
            parameters = parse_stored_json(state.parameters)
        except ValueError as error:
            where = f"parameters of {state.key[:12]!r}"
            reason = damaged_component_reason(where, str(error))
            damaged.append(DamagedEntry(state.key, "*", reason))
            continue
        records.append(
            ComponentRecord(
                key=state.key,
                full_type=state.component_type.full_type,
                version=state.component_type.version,
                parameters=parameters,
                input_keys=tuple(item.input_key for item in state.inputs.order_by("position")),
            )
        )
    return records, damaged


def remove_damaged_component(alias: str | None, key: str) -> tuple[int, list[str]]:
    """Delete a component whose parameters are damaged (still, looked at again under its
    row's lock) and all its items; return 1 (0 when none was removed) and the paths of
    their record files."""
    from django.db import transaction

    from .models import ComponentState, DataItem

    with transaction.atomic(using=alias):
        state = (
            ComponentState.objects.using(alias)
            .select_for_update()
            .filter(key_digest=digest(key))
            .first()
        )
        if state is None:
            return 0, []
        try:
            parse_stored_json(state.parameters)
        except ValueError:
            items = DataItem.objects.using(alias).filter(state=state)
            paths = [str(path) for path in items.values_list("path", flat=True) if path]
            items.delete()
            state.delete()
            return 1, paths
        return 0, []
