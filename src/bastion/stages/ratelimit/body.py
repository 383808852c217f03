"""The value a body-keyed limit counts by: one member of the request body.

A login limited ``by: body:/username`` counts attempts per *target account*, so a brute
force on one account is stopped however many client addresses it comes from. That only
holds if an attacker cannot make one account look like several, so the value is read the
way a lenient backend might read it, and ambiguity is never a fresh budget:

- The body is read as JSON whatever its ``Content-Type`` says (a backend may parse JSON
  sent as ``text/plain``), or as a form when it is ``application/x-www-form-urlencoded``.
- The value is compared case-folded and NFKC-normalised, trimmed: ``Alice``, ``ALICE`` and
  ``alice`` (or alice in full-width letters) are one account, as they are to most backends.
- A body that names the member twice (a JSON object with the key twice, a form field given
  twice) is :data:`AMBIGUOUS`: all such requests share one budget per limit.
- A body without the member (or not JSON, or whose member is not a string or a number) has
  no value: the request is counted by client IP, like a request without a header.
"""

from __future__ import annotations

import unicodedata
from typing import Any
from urllib.parse import parse_qsl

import orjson

from bastion.stages.validation.body import duplicate_key, media_type
from bastion.types import Request

#: The subject of every request whose body names the member twice. No member's value can be
#: equal to it: values are trimmed, and this starts with a space.
AMBIGUOUS = " ambiguous"


def pointer_steps(pointer: str) -> tuple[str, ...]:
    """``/user/name`` -> ``("user", "name")`` (the config only admits plain names)."""
    return tuple(pointer.split("/")[1:])


def body_member(request: Request, steps: tuple[str, ...]) -> str | None:
    """The normalised value at ``steps`` in the request's body, :data:`AMBIGUOUS`, or ``None``."""
    body = request.body
    if not body:
        return None
    content_type = request.header("content-type")
    if content_type is not None and media_type(content_type)[0] == "application/x-www-form-urlencoded":
        return _form_member(body, steps)
    parsed = request.parsed_json
    if parsed is None:
        try:
            value: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        # A repeated key means different values to different parsers: not one account.
        if duplicate_key(body, value) is not None:
            return AMBIGUOUS
    else:
        value = parsed[0]  # an earlier stage parsed it, and refused repeated keys
    for step in steps:
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return _normalised(value)


def _form_member(body: bytes, steps: tuple[str, ...]) -> str | None:
    if len(steps) != 1:
        return None  # a form is flat: only a one-step pointer names a field
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return None
    found = [value for name, value in fields if name == steps[0]]
    if len(found) > 1:
        return AMBIGUOUS
    return _normalised(found[0]) if found else None


def _normalised(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = unicodedata.normalize("NFKC", str(value)).casefold().strip()
    return text or None


__all__ = ["AMBIGUOUS", "body_member", "pointer_steps"]
