"""What is cached, in the Django admin: readable, searchable, and read-only by default.

Each entry shows its component's key (short), type, version, attribute, size and when it
was stored, and its parameters as readable JSON; the detail page adds the inputs (with
their types) and the record's provenance when the record is in the database. Search
looks at attributes, types, versions, keys and the parameters' text; filters by type,
version and attribute.

Nothing can be added or changed here. Deleting is off too, unless the project's settings
say ``ADATASTORE_ADMIN_ALLOW_DELETE = True``: a row deleted here leaves its record file
(with ``data_root_dir``) to ``cleanup()``.
"""

from __future__ import annotations

import json
from typing import Any, cast

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from ..._codec import record as _record
from ...provenance import Provenance
from .models import ComponentInput, ComponentState, DataItem

__all__ = ["DataItemAdmin"]


def _deletion_allowed() -> bool:
    return bool(getattr(settings, "ADATASTORE_ADMIN_ALLOW_DELETE", False))


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover


def _pretty(parameters: str) -> str:
    try:
        return json.dumps(json.loads(parameters), indent=2, ensure_ascii=False, sort_keys=True)
    except (ValueError, RecursionError):
        return parameters


@admin.register(DataItem)
class DataItemAdmin(admin.ModelAdmin):
    list_display = (
        "short_key",
        "full_type",
        "version",
        "attribute",
        "human_size",
        "stored_at",
        "parameters_preview",
    )
    list_filter = (
        "state__component_type__full_type",
        "state__component_type__version",
        "attribute",
    )
    search_fields = (
        "attribute",
        "state__component_type__full_type",
        "state__component_type__version",
        "state__key",
        "state__parameters",
    )
    date_hierarchy = "stored_at"
    list_select_related = ("state__component_type",)
    ordering = ("-stored_at",)
    fields = (
        "key",
        "full_type",
        "version",
        "attribute",
        "human_size",
        "stored_at",
        "where",
        "parameters_json",
        "inputs",
        "provenance",
    )
    readonly_fields = fields

    @admin.display(description="key")
    def short_key(self, item: DataItem) -> str:
        return str(item.state.key)[:12]

    @admin.display(description="key")
    def key(self, item: DataItem) -> str:
        return str(item.state.key)

    @admin.display(ordering="state__component_type__full_type", description="type")
    def full_type(self, item: DataItem) -> str:
        return str(item.state.component_type.full_type)

    @admin.display(ordering="state__component_type__version", description="version")
    def version(self, item: DataItem) -> str:
        return str(item.state.component_type.version)

    @admin.display(ordering="size", description="size")
    def human_size(self, item: DataItem) -> str:
        return _size(int(item.size))

    @admin.display(description="parameters")
    def parameters_preview(self, item: DataItem) -> str:
        text = str(item.state.parameters)
        return text if len(text) <= 80 else text[:77] + "..."

    @admin.display(description="parameters")
    def parameters_json(self, item: DataItem) -> str:
        return cast(str, format_html("<pre>{}</pre>", _pretty(str(item.state.parameters))))

    @admin.display(description="stored in")
    def where(self, item: DataItem) -> str:
        return "the database" if item.path is None else f"data_root_dir: {item.path}"

    @admin.display(description="inputs")
    def inputs(self, item: DataItem) -> str:
        database = item._state.db
        rows = list(
            ComponentInput.objects.using(database).filter(state=item.state).order_by("position")
        )
        if not rows:
            return "none"
        types = dict(
            ComponentState.objects.using(database)
            .filter(key_digest__in=[row.input_digest for row in rows])
            .values_list("key_digest", "component_type__full_type")
        )
        described = (
            (row.input_key[:12], types.get(row.input_digest, "(not stored here)")) for row in rows
        )
        rows_html = format_html_join("", "<div><code>{}</code> {}</div>", described)
        return cast(str, rows_html)  # safe HTML: every value escaped

    @admin.display(description="provenance")
    def provenance(self, item: DataItem) -> str:
        if item.payload is None:
            return "in the record file (adatastore show KEY prints it)"
        try:
            header, _ = _record.read_header(bytes(item.payload[: 16 << 10]))
            found = header.provenance
            described = None if found is None else Provenance.from_json(found).describe()
        except (_record.DamagedRecord, ValueError):
            return "unreadable (the record is damaged: adatastore verify reports it)"
        return described or "not recorded"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _deletion_allowed() and bool(super().has_delete_permission(request, obj))

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = super().get_actions(request)
        if not _deletion_allowed():
            actions.pop("delete_selected", None)
        return actions
