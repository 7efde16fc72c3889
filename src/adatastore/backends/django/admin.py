"""A read-only listing of what is cached, in the Django admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import DataItem


@admin.register(DataItem)
class DataItemAdmin(admin.ModelAdmin):
    list_display = ("attribute", "full_type", "version", "size", "stored_at")
    list_filter = ("attribute", "state__component_type__full_type")
    search_fields = ("attribute", "state__component_type__full_type", "state__key")
    date_hierarchy = "stored_at"
    list_select_related = ("state__component_type",)
    exclude = ("payload",)
    ordering = ("-stored_at",)

    @admin.display(ordering="state__component_type__full_type", description="type")
    def full_type(self, item: DataItem) -> str:
        return str(item.state.component_type.full_type)

    @admin.display(ordering="state__component_type__version", description="version")
    def version(self, item: DataItem) -> str:
        return str(item.state.component_type.version)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
