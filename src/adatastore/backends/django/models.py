"""Tables of the Django back-end.

Keys and types can be long (``join_with_underscores`` keys run to kilobytes), so each is
stored in full as text and looked up by the sha256 digest of its text, which carries the
unique index: the same schema works on SQLite, PostgreSQL and MariaDB/MySQL.
"""

from __future__ import annotations

from django.db import models


class ComponentType(models.Model):
    """A component type at one version of its code."""

    digest = models.CharField(max_length=64, unique=True)
    full_type = models.TextField()
    version = models.TextField()

    class Meta:
        verbose_name = "component type"

    def __str__(self) -> str:
        return f"{self.full_type} {self.version}"


class ComponentState(models.Model):
    """A component's identity: its type, its parameters and its inputs; `key` names it."""

    key_digest = models.CharField(max_length=64, unique=True)
    key = models.TextField()
    component_type = models.ForeignKey(
        ComponentType, on_delete=models.PROTECT, related_name="states"
    )
    parameters = models.TextField(help_text="JSON rendering of the parameters, for people")

    class Meta:
        verbose_name = "component state"

    def __str__(self) -> str:
        return str(self.key)[:80]


class ComponentInput(models.Model):
    """The inputs of a component state, in order, by key."""

    state = models.ForeignKey(ComponentState, on_delete=models.CASCADE, related_name="inputs")
    position = models.PositiveIntegerField()
    input_key = models.TextField()
    input_digest = models.CharField(max_length=64, db_index=True)

    class Meta:
        verbose_name = "component input"
        ordering = ["state", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["state", "position"], name="adatastore_input_state_position"
            )
        ]


class DataItem(models.Model):
    """One stored attribute of one component state: its record, or where its file is."""

    state = models.ForeignKey(ComponentState, on_delete=models.CASCADE, related_name="items")
    attribute = models.CharField(max_length=255)
    payload = models.BinaryField(null=True)
    path = models.TextField(null=True, help_text="record file, relative to data_root_dir")
    size = models.BigIntegerField()
    stored_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, help_text="when it was last read, coarsely")

    class Meta:
        verbose_name = "data item"
        constraints = [
            models.UniqueConstraint(
                fields=["state", "attribute"], name="adatastore_item_state_attribute"
            )
        ]
        indexes = [models.Index(fields=["stored_at"], name="adatastore_item_stored_at")]

    def __str__(self) -> str:
        return str(self.attribute)


class StoreMarker(models.Model):
    """One random identifier per database: its record files live in
    ``data_root_dir/records/<uid>/``, apart from those of other databases."""

    uid = models.CharField(max_length=32, unique=True)

    class Meta:
        verbose_name = "store marker"

    def __str__(self) -> str:
        return str(self.uid)
