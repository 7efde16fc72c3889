"""Sphinx configuration: ``tox -e docs`` builds the site with warnings as errors."""

from __future__ import annotations

import adatastore

project = "adatastore"
author = "adatastore developers"
copyright = "2026, adatastore developers"
release = adatastore.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
default_role = "py:obj"  # `name` in docstrings links to the object when Sphinx knows it
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_theme_options = {"description": "Cache what long computations produce."}
