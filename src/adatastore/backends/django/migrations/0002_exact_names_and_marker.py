"""Exact names on MariaDB/MySQL, and a marker that tells this store's record files apart.

MariaDB's and MySQL's default collations compare text case- and accent-insensitively and
ignore trailing spaces: "Spikes" and "spikes", "rate" and "rate ", "resume" and "résumé"
were one attribute there (the second store overwrote the first's row). The text columns
that names live in get a binary collation without padding, so names compare byte for byte
as on SQLite and PostgreSQL. Other databases are left as they are.

`StoreMarker` holds one random identifier per database: a store keeps its record files
under ``data_root_dir/records/<identifier>/``, so that two databases sharing a
data_root_dir (a development and a production one) never clean up each other's files.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.db import migrations, models

# (table, column, SQL type) of every column holding a name or a key
_COLUMNS = [
    ("adatastore_dataitem", "attribute", "VARCHAR(255) NOT NULL"),
    ("adatastore_componenttype", "full_type", "LONGTEXT NOT NULL"),
    ("adatastore_componenttype", "version", "LONGTEXT NOT NULL"),
    ("adatastore_componentstate", "key", "LONGTEXT NOT NULL"),
    ("adatastore_componentinput", "input_key", "LONGTEXT NOT NULL"),
]


def _binary_collation(cursor: Any) -> str:
    """The most exact utf8mb4 collation the server has (no padding first)."""
    for name in ("utf8mb4_nopad_bin", "utf8mb4_0900_bin", "utf8mb4_bin"):
        cursor.execute("SHOW COLLATION WHERE Collation = %s", [name])
        if cursor.fetchone():
            return name
    return "utf8mb4_bin"  # pragma: no cover - every MariaDB and MySQL has it


def exact_names(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    if connection.vendor != "mysql":
        return
    with connection.cursor() as cursor:
        collation = _binary_collation(cursor)
        for table, column, kind in _COLUMNS:
            kind, _, rest = kind.partition(" ")
            cursor.execute(
                f"ALTER TABLE `{table}` MODIFY `{column}` {kind} "
                f"CHARACTER SET utf8mb4 COLLATE {collation} {rest}"
            )


def make_marker(apps: Any, schema_editor: Any) -> None:
    marker = apps.get_model("adatastore", "StoreMarker")
    alias = schema_editor.connection.alias
    if not marker.objects.using(alias).exists():
        marker.objects.using(alias).create(uid=secrets.token_hex(8))


class Migration(migrations.Migration):
    dependencies = [("adatastore", "0001_initial")]

    operations = [
        migrations.RunPython(exact_names, migrations.RunPython.noop),
        migrations.CreateModel(
            name="StoreMarker",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("uid", models.CharField(max_length=32, unique=True)),
            ],
            options={"verbose_name": "store marker"},
        ),
        migrations.RunPython(make_marker, migrations.RunPython.noop),
    ]
