"""A minimal Django project with the admin and the adatastore app, for the browser test.

``python admin_server.py DIRECTORY``: migrates an SQLite database in DIRECTORY, makes a
superuser (admin / admin-password), stores a few entries through the store the project
uses, then serves on 127.0.0.1 (a free port) and prints ``ready PORT``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import django
from django.conf import settings
from django.urls import path


def urls() -> list[object]:
    from django.contrib import admin

    return [path("admin/", admin.site.urls)]


urlpatterns: list[object] = []  # filled once Django is set up


def main() -> None:
    global urlpatterns
    directory = Path(sys.argv[1])
    settings.configure(
        DEBUG=True,
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(directory / "project.db"),
            }
        },
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.staticfiles",
            "adatastore.backends.django",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        ROOT_URLCONF=__name__,
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        STATIC_URL="/static/",
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()
    urlpatterns = urls()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    User.objects.create_superuser("admin", "admin@example.org", "admin-password")

    from components import SimpleComponent

    from adatastore import DjangoORMDataStore

    store = DjangoORMDataStore()  # the project's default database
    stimulus = SimpleComponent({"rate_hz": 12.5, "seed": 7})
    network = SimpleComponent(
        {"cells": 400, "neuron": {"tau_m": 20.0, "threshold": -50.0}}, input=stimulus
    )
    store.store(stimulus, "spikes", list(range(100)))
    store.store(network, "rates", {"mean": 3.2})
    store.store(SimpleComponent({"cells": 800, "neuron": {"tau_m": 10.0}}), "rates", {})
    store.close()

    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer
    from django.core.wsgi import get_wsgi_application

    server = WSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
    server.set_app(StaticFilesHandler(get_wsgi_application()))
    print("ready", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
