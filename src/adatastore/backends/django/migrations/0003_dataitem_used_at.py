"""When each data item was last read (``used_at``), for the stores' size and age limits:
written in batches by the stores that have limits (see ``adatastore._core.limits``), NULL
until then. Older adatastore releases do not name the column, so they keep working."""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("adatastore", "0002_exact_names_and_marker")]

    operations = [
        migrations.AddField(
            model_name="dataitem",
            name="used_at",
            field=models.DateTimeField(null=True, help_text="when it was last read, coarsely"),
        ),
    ]
