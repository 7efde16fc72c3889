"""What a message, repr or log line may show of a URL: never a password, never the value
of an option that looks secret (``?secret_access_key=...``, ``?password=...``), and,
where the allowed options are known, never the value of any other: a mistyped option
is often a secret put in the wrong place, and the "unknown option" error repeated it."""

from __future__ import annotations

import re
from collections.abc import Collection
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["looks_secret", "mask_password"]

_SECRET = re.compile(r"secret|passw|token|credential|auth|session|signature|(^|_)key$", re.I)


def looks_secret(name: str) -> bool:
    """Whether an option's name says its value is a secret (``secret_access_key``,
    ``password``, ``aws_session_token``, ``signing_key``, ...)."""
    return _SECRET.search(name) is not None


def mask_password(url: str, known: Collection[str] | None = None) -> str:
    """`url` for messages: its password, if any, and the value of every query option
    whose name looks secret — or, given the `known` options, of every other one — replaced
    by ``***``; the rest of the text as it was given."""
    head, mark, rest = url.partition("?")
    query, hash_mark, fragment = rest.partition("#")
    try:
        parts = urlsplit(head)
        password = parts.password
        options = parse_qsl(query, keep_blank_values=True)
    except ValueError:
        return url if "@" not in url and not mark else "<a malformed URL>"
    if password:
        user, _, host = parts.netloc.rpartition("@")
        head = urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}"))
    hidden = [
        (
            name,
            "***"
            if looks_secret(name) or (known is not None and name not in known)
            else mask_password(value)  # a URL inside (``payloads=s3://...?...``)
            if "://" in value
            else value,
        )
        for name, value in options
    ]
    if hidden != options:
        query = urlencode(hidden, safe="*:/")
    return head + mark + query + hash_mark + fragment
