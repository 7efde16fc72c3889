"""The version of adatastore (its own module, so that modules the package imports can
name it without importing the package: no import cycle)."""

__version__ = "0.2.0"
