"""Open a store from a URL, so configuration can live in a file or an environment variable.

======================================  ====================================================
``sqlite:///relative/path.db``          SQLite file, relative to the working directory
``sqlite:////absolute/path.db``         SQLite file, absolute path
``file:///absolute/dir``                files back-end (``file:relative/dir`` also works)
``memory://``                           a new in-process store
``some/path.db``                        a plain path: the SQLite default
``django+sqlite:///path.db``            Django ORM on SQLite
``django+postgresql://u:p@host/db``     Django ORM on PostgreSQL (``?data_root_dir=...``)
``django+mysql://u:p@host/db``          Django ORM on MariaDB/MySQL (also ``django+mariadb``)
``s3://bucket/prefix``                  objects in an S3-compatible bucket
                                        (``?endpoint=http://host:9000&region=...``)
======================================  ====================================================

Options go in the query string (``sqlite:///cache.db?durable=true&busy_timeout=5``) or as
keyword arguments, which win. ``ADATASTORE_URL`` is used when no URL is given. Other
back-ends add their schemes with `register_scheme`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ._compute.spec import StoreSpec
from ._runtime.masking import looks_secret, mask_password
from ._stores.files import AsyncShelveDataStore
from ._stores.memory import AsyncMemoryDataStore
from ._stores.sqlite import AsyncSQLiteDataStore
from .errors import ConfigurationError
from .store import AsyncDataStore
from .sync import SyncDataStore

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "StoreURL",
    "mask_password",
    "open_store",
    "open_store_sync",
    "parse_url",
    "register_scheme",
    "schemes",
]

ENVIRONMENT_VARIABLE = "ADATASTORE_URL"


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed store URL."""

    scheme: str
    host: str
    path: str
    """The path, percent-decoded; for ``sqlite:`` and ``file:`` a file-system path."""
    options: dict[str, str] = field(default_factory=dict, repr=False)
    """Query-string options, not yet converted (not in the repr: values may be secret)."""
    text: str = ""
    """The URL as given, its password masked (``***``): for messages."""
    raw: str = field(default="", repr=False)
    """The URL as given, password included: for the factories only."""


StoreFactory = Callable[[StoreURL, dict[str, Any]], AsyncDataStore]


@dataclass(frozen=True, slots=True)
class _Scheme:
    factory: StoreFactory
    options: Mapping[str, type]
    description: str


_SCHEMES: dict[str, _Scheme] = {}


def register_scheme(
    scheme: str,
    factory: StoreFactory,
    *,
    options: Mapping[str, type] | None = None,
    description: str = "",
) -> None:
    """Make `open_store` understand ``scheme://...``.

    `factory(url, options)` returns an unopened async store. `options` names the query
    options the scheme accepts and their types (``bool``, ``int``, ``float``, ``str``).
    """
    _SCHEMES[scheme.lower()] = _Scheme(factory, dict(options or {}), description)


def schemes() -> dict[str, str]:
    """The registered schemes and what each opens."""
    return {name: scheme.description for name, scheme in sorted(_SCHEMES.items())}


def _known() -> str:
    return ", ".join(f"{name}://" for name in sorted(_SCHEMES))


def _looks_like_url(text: str) -> bool:
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    return "://" in text or (len(scheme) > 1 and scheme in _SCHEMES)


def parse_url(url: str | os.PathLike[str]) -> StoreURL:
    """Parse a store URL or a plain path (which means SQLite); raise `ConfigurationError`.

    No message ever shows a password: the URL's text in a `StoreURL` and in every error
    has it masked as ``***``.
    """
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"a store URL must be a non-empty string, not {url!r}")
    if not _looks_like_url(url):
        _check_path(url, url)
        return StoreURL("sqlite", "", url, {}, url, url)
    masked = mask_password(url)
    try:
        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False))
        parts.port  # noqa: B018 - checks the port: 99999 and "abc" are not ports
    except ValueError as error:
        raise ConfigurationError(f"malformed store URL {masked!r}: {error}") from None
    scheme = parts.scheme.lower()
    if scheme in _SCHEMES:  # unknown options' values masked too: a misplaced secret
        masked = mask_password(url, {*_SCHEMES[scheme].options, *_COMMON_OPTIONS})
    else:
        raise ConfigurationError(
            f"unknown store URL scheme {parts.scheme!r} in {masked!r}; known schemes: "
            f"{_known()} (or a plain path for the SQLite default)"
        )
    path = unquote(parts.path)
    _check_path(path, masked)
    for name, value in options.items():
        if "\0" in name or "\0" in value:
            raise ConfigurationError(f"store URL {masked!r}: a NUL byte in option {name!r}")
    return StoreURL(scheme, urlsplit(masked).netloc, path, options, masked, url)


def _check_path(path: str, shown: str) -> None:
    if "\0" in path:
        raise ConfigurationError(f"store URL {shown!r}: a NUL byte in the path")


_BOOLEANS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


def _parse_bool(text: str) -> bool:
    try:
        return _BOOLEANS[text.lower()]
    except KeyError:
        raise ValueError(text) from None


_COMMON_OPTIONS: dict[str, type] = {
    "compression": str,
    "mmap": str,
    "on_bad_entry": str,
    "warn_stale_code": bool,
    "key_includes_code": bool,
    "max_size": str,
    "max_entries": int,
    "max_age": str,
}
"""Options every scheme takes: ``?compression=zstd:5``, ``?mmap=1`` (or ``c``),
``?max_size=50GB&max_age=30d``, ... (`StoreOptions`)."""


def _convert(url: StoreURL, scheme: _Scheme) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for name, text in url.options.items():
        if name == "mmap":
            converted[name] = _BOOLEANS.get(text.lower(), text)  # or "r", "c"
            continue
        kind = scheme.options.get(name) or _COMMON_OPTIONS.get(name)
        if kind is None:
            allowed = ", ".join(sorted({*scheme.options, *_COMMON_OPTIONS}))
            raise ConfigurationError(
                f"store URL {url.text!r}: unknown option {name!r} (allowed: {allowed})"
            )
        try:
            value = _parse_bool(text) if kind is bool else kind(text)
            if kind is float and not (math.isfinite(value) and value >= 0):
                raise ValueError(text)  # noqa: TRY301 - the same message as a non-number
        except ValueError:
            shown = "***" if looks_secret(name) else repr(text)
            raise ConfigurationError(
                f"store URL {url.text!r}: option {name!r} must be a "
                f"{'non-negative finite number' if kind is float else kind.__name__}, "
                f"not {shown}"
            ) from None
        converted[name] = value
    return converted


def _from_spec(spec: StoreSpec, options: dict[str, Any]) -> AsyncDataStore:
    if options:
        raise ConfigurationError(
            f"a StoreSpec describes the whole store; options {sorted(options)} cannot be added"
        )
    spec.signer()  # refuses a signing key here other than the store's
    return AsyncDataStore(  # signing_key=None: ADATASTORE_SIGNING_KEY, checked just now
        spec.backend.make(),
        key_generator=spec.key_generator,
        serializer=spec.serializer,
        **spec.settings.options(),
    )


def _resolve(
    url: str | os.PathLike[str] | StoreSpec | None, options: dict[str, Any]
) -> AsyncDataStore:
    if isinstance(url, StoreSpec):
        return _from_spec(url, options)
    if url is None:
        url = os.environ.get(ENVIRONMENT_VARIABLE)
        if not url:
            raise ConfigurationError(
                f"no store URL given and {ENVIRONMENT_VARIABLE} is not set; known schemes: "
                f"{_known()}"
            )
    parsed = parse_url(url)
    scheme = _SCHEMES[parsed.scheme]
    return scheme.factory(parsed, {**_convert(parsed, scheme), **options})


async def open_store(
    url: str | os.PathLike[str] | StoreSpec | None = None, **options: Any
) -> AsyncDataStore:
    """Open (and return) the async store `url` names; ``ADATASTORE_URL`` when url is None.

    `url` may also be a store's `StoreSpec` (``store.spec``): the same store, from another
    process (with the same signing key in ``ADATASTORE_SIGNING_KEY``, if it signs).

    Keyword options go to the store's constructor (``key_generator``, ``serializer``,
    ``durable``, ...). ``create=False`` (or ``?create=false``) opens only a store that
    exists, and creates nothing: a mistyped path is a `ConfigurationError`, not a new empty
    store (the command's inspection tools open stores so). Close the store with
    ``aclose()`` or use it with ``async with``.
    """
    return await _resolve(url, options).open()


def open_store_sync(
    url: str | os.PathLike[str] | StoreSpec | None = None, **options: Any
) -> SyncDataStore[Any]:
    """Blocking twin of `open_store`: the store behind the blocking API."""
    return SyncDataStore(_resolve(url, options))


# -- the built-in schemes ----------------------------------------------------------------------


def _local_path(url: StoreURL, what: str) -> str:
    if url.host not in ("", "localhost"):
        raise ConfigurationError(
            f"store URL {url.text!r}: {what} must be on this machine, not on {url.host!r}"
        )
    if url.text == url.path:  # a plain path
        return url.path
    path = url.path
    if url.scheme.endswith("sqlite") and url.text.split(":", 1)[1].startswith("///"):
        path = path[1:]  # sqlite:///relative, sqlite:////absolute (as SQLAlchemy has it)
    if not path:
        raise ConfigurationError(f"store URL {url.text!r} names no {what}")
    return path


def _sqlite(url: StoreURL, options: dict[str, Any]) -> AsyncDataStore:
    return AsyncSQLiteDataStore(_local_path(url, "database file"), **options)


def _files(url: StoreURL, options: dict[str, Any]) -> AsyncDataStore:
    return AsyncShelveDataStore(_local_path(url, "directory"), **options)


def _memory(url: StoreURL, options: dict[str, Any]) -> AsyncDataStore:
    if url.host or url.path.strip("/"):
        raise ConfigurationError(f"store URL {url.text!r}: memory:// takes no path")
    if options.pop("create", True) is False:
        raise ConfigurationError(
            f"no store at {url.text!r}: a memory store exists only in the process that made it"
        )
    return AsyncMemoryDataStore(**options)


register_scheme(
    "sqlite",
    _sqlite,
    options={"durable": bool, "busy_timeout": float, "create": bool, "payloads": str},
    description="one SQLite file (the embedded default)",
)
register_scheme(
    "file",
    _files,
    options={"durable": bool, "create": bool},
    description="a directory of entry files",
)
register_scheme("memory", _memory, description="an in-process dict, gone at exit")


def _django(engine: str) -> StoreFactory:
    def factory(url: StoreURL, options: dict[str, Any]) -> AsyncDataStore:
        from ._stores.django import AsyncDjangoORMDataStore

        if engine == "sqlite3":
            database: dict[str, Any] = {
                "ENGINE": engine,
                "NAME": _local_path(url, "database file"),
            }
        else:
            parts = urlsplit(url.raw or url.text)
            name = unquote(parts.path.lstrip("/"))
            if not name or not parts.hostname:
                raise ConfigurationError(
                    f"store URL {url.text!r} needs a host and a database name: "
                    f"django+{engine}://user:password@host:port/database"
                )
            database = {
                "ENGINE": engine,
                "NAME": name,
                "HOST": parts.hostname,
                "PORT": str(parts.port or ""),
                "USER": unquote(parts.username or ""),
                "PASSWORD": unquote(parts.password or ""),
            }
        return AsyncDjangoORMDataStore(database, **options)

    return factory


def _s3(url: StoreURL, options: dict[str, Any]) -> AsyncDataStore:
    from ._stores.objects import AsyncObjectDataStore

    parts = urlsplit(url.raw or url.text)
    if parts.username or parts.password:
        raise ConfigurationError(
            f"store URL {url.text!r}: credentials do not go in an s3:// URL; use the AWS "
            "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or keyword arguments"
        )
    if not url.host:
        raise ConfigurationError(f"store URL {url.text!r} names no bucket: s3://bucket/prefix")
    return AsyncObjectDataStore(url.host, url.path.strip("/"), **options)


register_scheme(
    "s3",
    _s3,
    options={
        "endpoint": str,
        "region": str,
        "lease": float,
        "timeout": float,
        "concurrency": int,
        "part_size": int,
        "create": bool,
    },
    description="objects in an S3-compatible bucket (shared by machines; no database)",
)


_DJANGO_OPTIONS = {"data_root_dir": str, "alias": str, "create": bool, "payloads": str}
register_scheme(
    "django+sqlite",
    _django("sqlite3"),
    options=_DJANGO_OPTIONS,
    description="Django ORM on an SQLite file",
)
register_scheme(
    "django+postgresql",
    _django("postgresql"),
    options=_DJANGO_OPTIONS,
    description="Django ORM on PostgreSQL (shared by a cluster)",
)
for _name in ("django+mysql", "django+mariadb"):
    register_scheme(
        _name,
        _django("mysql"),
        options=_DJANGO_OPTIONS,
        description="Django ORM on MariaDB or MySQL",
    )
