"""The app's configuration."""

from django.apps import AppConfig


class AdatastoreConfig(AppConfig):
    name = "adatastore.backends.django"
    label = "adatastore"
    verbose_name = "adatastore cache"
    default_auto_field = "django.db.models.BigAutoField"
