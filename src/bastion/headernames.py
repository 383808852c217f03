"""HTTP field names and values as a configuration writes them (RFC 9110 5.1 and 5.5).

One check for every setting that names headers (the headers and response stages' header
maps, upstream credentials, API key header names), so a name one accepts another does not
refuse. Imports nothing of Bastion's: stage configs and ``bastion.config.model`` both use it.
"""

from __future__ import annotations

from collections.abc import Mapping

#: RFC 9110 5.6.2 ``tchar``: the characters of a field name (ASCII only).
TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def is_token(text: str) -> bool:
    """Whether ``text`` is a valid field name (a non-empty run of ``tchar``)."""
    return bool(text) and all(c in TCHARS for c in text)


def checked_fields(fields: Mapping[str, str]) -> dict[str, str]:
    """``fields`` with lower-cased names; raise ValueError naming a bad name, or a value
    holding CR, LF or NUL (which would split or end the head it is written into)."""
    out: dict[str, str] = {}
    for name, value in fields.items():
        if not is_token(name):
            raise ValueError(f"{name!r} is not a valid header name")
        if any(c in value for c in "\r\n\x00"):
            raise ValueError(f"the value of {name!r} contains CR, LF or NUL")
        out[name.lower()] = value
    return out
