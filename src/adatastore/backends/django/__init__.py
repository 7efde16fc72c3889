"""The Django back-end, as a Django app (``adatastore.backends.django``, label ``adatastore``).

Use it standalone — `DjangoORMDataStore` configures a minimal Django and runs the app's
migrations itself — or inside a Django project: add ``"adatastore.backends.django"`` to
``INSTALLED_APPS``, run ``manage.py migrate``, and the stores use the project's databases.

This package imports nothing from Django until a store is used, so ``import adatastore``
works without the ``django`` extra.
"""
