"""Every public import path of 0.2.0 and of today still imports, with every name its
``__all__`` listed: moving modules (issue 31) must never change a user's import line.

The lists were read off the 0.2.0 release (fb16851) and off main before the layers moved
(6cd0482) with an AST walk of each public module's ``__all__``.
"""

from __future__ import annotations

import importlib
import importlib.util

import pytest

V0_2_0: dict[str, list[str]] = {
    "adatastore": [
        "AsyncDataStore",
        "AsyncDjangoORMDataStore",
        "AsyncMemoryDataStore",
        "AsyncSQLiteDataStore",
        "AsyncShelveDataStore",
        "Component",
        "ComponentError",
        "ComponentRecord",
        "ConfigurationError",
        "CorruptEntryError",
        "DataStoreError",
        "DjangoORMDataStore",
        "Entry",
        "Explanation",
        "JSONSerializer",
        "MemoryDataStore",
        "PickleSerializer",
        "Provenance",
        "SQLiteDataStore",
        "SerializationError",
        "Serializer",
        "ShelveDataStore",
        "Stats",
        "SyncDataStore",
        "UnhashableParameterError",
        "VerifyReport",
        "WarmProgress",
        "WarmReport",
        "cached",
        "errors",
        "keygenerators",
        "open_store",
        "open_store_sync",
        "register_scheme",
        "serializers",
    ],
    "adatastore.__main__": [],
    "adatastore.backends": ["AsyncMemoryDataStore", "AsyncSQLiteDataStore", "AsyncShelveDataStore"],
    "adatastore.backends.django": [],
    "adatastore.backends.django.admin": [],
    "adatastore.backends.django.apps": [],
    "adatastore.backends.django.migrations": [],
    "adatastore.backends.django.migrations.0001_initial": [],
    "adatastore.backends.django.models": [],
    "adatastore.backends.django.store": [
        "APP",
        "AsyncDjangoORMDataStore",
        "DjangoORMDataStore",
        "database_settings",
    ],
    "adatastore.backends.files": ["AsyncShelveDataStore", "FORMAT_NAME", "FORMAT_VERSION"],
    "adatastore.backends.memory": ["AsyncMemoryDataStore"],
    "adatastore.backends.sqlite": ["AsyncSQLiteDataStore", "FILE_THRESHOLD", "SCHEMA_VERSION"],
    "adatastore.cli": ["main"],
    "adatastore.component": [
        "Component",
        "check_component",
        "full_type",
        "inputs_of",
        "walk_inputs",
    ],
    "adatastore.decorators": ["cached"],
    "adatastore.demo": [],
    "adatastore.errors": [
        "ComponentError",
        "ConfigurationError",
        "CorruptEntryError",
        "DataStoreError",
        "IntegrityError",
        "InvalidKeyError",
        "InvalidNameError",
        "NetworkFilesystemWarning",
        "SerializationError",
        "StorageError",
        "StoreClosedError",
        "UnhashableParameterError",
    ],
    "adatastore.keygenerators": [
        "KeyGenerator",
        "canonical_hash",
        "canonical_parameters",
        "full_type",
        "hash_pickle",
        "join_with_underscores",
    ],
    "adatastore.provenance": [
        "Candidate",
        "Difference",
        "Explanation",
        "Provenance",
        "diff_parameters",
    ],
    "adatastore.serializers": ["Buffer", "JSONSerializer", "PickleSerializer", "Serializer"],
    "adatastore.signing": [
        "ENVIRONMENT_VARIABLE",
        "MIN_KEY_BYTES",
        "Signer",
        "SigningKey",
        "signer_from",
    ],
    "adatastore.stats": ["Stats", "logger"],
    "adatastore.store": [
        "AsyncDataStore",
        "ComponentRecord",
        "DamagedEntry",
        "Entry",
        "MAX_ATTRIBUTE_NAME_LENGTH",
        "VerifyReport",
        "WarmProgress",
        "WarmReport",
    ],
    "adatastore.sync": ["MemoryDataStore", "SQLiteDataStore", "ShelveDataStore", "SyncDataStore"],
    "adatastore.urls": [
        "ENVIRONMENT_VARIABLE",
        "StoreURL",
        "open_store",
        "open_store_sync",
        "parse_url",
        "register_scheme",
        "schemes",
    ],
}

BEFORE_THE_LAYERS: dict[str, list[str]] = {
    "adatastore": [
        "AsyncDataStore",
        "AsyncDjangoORMDataStore",
        "AsyncMemoryDataStore",
        "AsyncObjectDataStore",
        "AsyncSQLiteDataStore",
        "AsyncShelveDataStore",
        "Backend",
        "Component",
        "ComponentError",
        "ComponentRecord",
        "ConfigurationError",
        "CorruptEntryError",
        "DataStoreError",
        "DjangoORMDataStore",
        "Entry",
        "ExecutorError",
        "Explanation",
        "JSONSerializer",
        "MemoryDataStore",
        "ObjectDataStore",
        "PickleSerializer",
        "Provenance",
        "SQLiteDataStore",
        "SerializationError",
        "Serializer",
        "ShelveDataStore",
        "StaleCodeWarning",
        "Stats",
        "StoreOptions",
        "StoreSpec",
        "SyncDataStore",
        "UnhashableParameterError",
        "UnreadableValueError",
        "VerifyReport",
        "WarmProgress",
        "WarmReport",
        "WorkerTally",
        "cached",
        "code_version",
        "errors",
        "interface",
        "keygenerators",
        "open_store",
        "open_store_sync",
        "register_scheme",
        "serializers",
    ],
    "adatastore.__main__": [],
    "adatastore.backend": [
        "Backend",
        "BackendSpec",
        "MapMode",
        "RecordWrite",
        "ThreadedBackend",
        "Used",
        "no_lock",
        "unchanged",
    ],
    "adatastore.backends": [
        "AsyncMemoryDataStore",
        "AsyncObjectDataStore",
        "AsyncSQLiteDataStore",
        "AsyncShelveDataStore",
    ],
    "adatastore.backends.django": [],
    "adatastore.backends.django.admin": ["DataItemAdmin"],
    "adatastore.backends.django.apps": [],
    "adatastore.backends.django.migrations": [],
    "adatastore.backends.django.migrations.0001_initial": [],
    "adatastore.backends.django.migrations.0002_exact_names_and_marker": [],
    "adatastore.backends.django.migrations.0003_dataitem_used_at": [],
    "adatastore.backends.django.models": [],
    "adatastore.backends.django.store": [
        "APP",
        "AsyncDjangoORMDataStore",
        "DjangoBackend",
        "DjangoORMDataStore",
        "database_settings",
    ],
    "adatastore.backends.files": [
        "AsyncShelveDataStore",
        "FORMAT_NAME",
        "FORMAT_VERSION",
        "FilesBackend",
        "ShelveDataStore",
    ],
    "adatastore.backends.memory": ["AsyncMemoryDataStore", "MemoryBackend", "MemoryDataStore"],
    "adatastore.backends.objects": [
        "AsyncObjectDataStore",
        "FORMAT_NAME",
        "FORMAT_VERSION",
        "ObjectBackend",
        "ObjectDataStore",
    ],
    "adatastore.backends.sqlite": [
        "AsyncSQLiteDataStore",
        "FILE_THRESHOLD",
        "SCHEMA_VERSION",
        "SQLiteBackend",
        "SQLiteDataStore",
    ],
    "adatastore.cli": ["main"],
    "adatastore.component": [
        "Component",
        "check_component",
        "full_type",
        "inputs_of",
        "walk_inputs",
    ],
    "adatastore.decorators": ["cached"],
    "adatastore.demo": [],
    "adatastore.errors": [
        "ComponentError",
        "ConfigurationError",
        "CorruptEntryError",
        "DataStoreError",
        "ExecutorError",
        "IntegrityError",
        "InvalidKeyError",
        "InvalidNameError",
        "NetworkFilesystemWarning",
        "SerializationError",
        "StaleCodeWarning",
        "StorageError",
        "StoreClosedError",
        "UnhashableParameterError",
        "UnreadableValueError",
        "WorkerStartupError",
    ],
    "adatastore.interface": ["AbstractDataStore"],
    "adatastore.keygenerators": [
        "KeyGenerator",
        "canonical_hash",
        "canonical_parameters",
        "full_type",
        "hash_pickle",
        "join_with_underscores",
        "register_encoder",
    ],
    "adatastore.provenance": [
        "Candidate",
        "Difference",
        "Explanation",
        "Provenance",
        "diff_parameters",
    ],
    "adatastore.records": [
        "ComponentRecord",
        "DamagedEntry",
        "Entry",
        "VerifyReport",
        "WarmProgress",
        "WarmReport",
        "WorkerTally",
        "damaged_component_reason",
        "json_text",
        "parse_stored_json",
        "same_record",
        "storable_text",
    ],
    "adatastore.serializers": ["Buffer", "JSONSerializer", "PickleSerializer", "Serializer"],
    "adatastore.signing": [
        "ENVIRONMENT_VARIABLE",
        "MIN_KEY_BYTES",
        "Signer",
        "SigningKey",
        "signer_from",
    ],
    "adatastore.stats": ["Stats", "logger"],
    "adatastore.store": [
        "AsyncDataStore",
        "ComponentRecord",
        "DamagedEntry",
        "Entry",
        "MAX_ATTRIBUTE_NAME_LENGTH",
        "StoreOptions",
        "VerifyReport",
        "WarmProgress",
        "WarmReport",
        "check_attribute_name",
        "json_text",
        "storable_text",
    ],
    "adatastore.sync": ["SyncDataStore"],
    "adatastore.urls": [
        "ENVIRONMENT_VARIABLE",
        "StoreURL",
        "mask_password",
        "open_store",
        "open_store_sync",
        "parse_url",
        "register_scheme",
        "schemes",
    ],
}

# Importing these runs Django's model machinery, which needs configured settings (the
# Django back-end's own tests import them that way); here they only have to be found.
NEEDS_DJANGO_SETTINGS = {"adatastore.backends.django.admin", "adatastore.backends.django.models"}
RUNS_THE_COMMAND = {"adatastore.__main__"}

MODULES = sorted(set(V0_2_0) | set(BEFORE_THE_LAYERS))


@pytest.mark.parametrize("module", MODULES)
def test_a_public_import_path_still_imports(module: str) -> None:
    names = {*V0_2_0.get(module, []), *BEFORE_THE_LAYERS.get(module, [])}
    if module in NEEDS_DJANGO_SETTINGS | RUNS_THE_COMMAND:
        assert importlib.util.find_spec(module) is not None
        return
    imported = importlib.import_module(module)
    names |= set(getattr(imported, "__all__", ()))  # what a star import takes now
    missing = sorted(name for name in names if not hasattr(imported, name))
    assert not missing, f"from {module} import {', '.join(missing)} fails"


def test_adatastore_exports_what_it_did() -> None:
    import adatastore

    assert set(BEFORE_THE_LAYERS["adatastore"]) <= set(adatastore.__all__)
    assert set(V0_2_0["adatastore"]) <= set(adatastore.__all__)


def test_every_error_a_user_catches_is_exported_from_adatastore() -> None:
    import adatastore
    from adatastore import errors

    missing = sorted(set(errors.__all__) - set(adatastore.__all__))
    assert not missing, f"from adatastore import {', '.join(missing)} fails"
    assert all(getattr(adatastore, name) is getattr(errors, name) for name in errors.__all__)
