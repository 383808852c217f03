"""Valid example values for OpenAPI schemas, so every generated request passes validation.

The order of preference is the document's own words (``example``, ``examples``, ``default``,
``const``, ``enum``), then a value shaped by ``format`` (uuid, email, date-time, uri...), then
one that satisfies the bounds (``minimum``/``maximum``, ``minLength``/``maxLength``,
``minItems``) and simple ``pattern``s. URLs point at ``https://example.com/`` (reserved by
RFC 2606), so an API that fetches them contacts no one in particular.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Iterable
from typing import Any

from bastion.tester.audit.context import Spec, types_of

MAX_DEPTH = 6

FORMAT_SAMPLES: dict[str, Any] = {
    "uuid": "3f2b8c4e-1d2a-4c5b-9e6f-7a8b9c0d1e2f",
    "email": "scanner@example.com",
    "idn-email": "scanner@example.com",
    "date-time": "2024-01-15T10:30:00Z",
    "date": "2024-01-15",
    "time": "10:30:00Z",
    "duration": "P1D",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "iri": "https://example.com/",
    "uri-reference": "https://example.com/",
    "iri-reference": "https://example.com/",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "192.0.2.10",
    "ipv6": "2001:db8::10",
    "byte": "c2Nhbm5lcg==",
    "binary": "scanner",
    "password": "Sc4nner-Passw0rd!",
    "json-pointer": "/a",
    "regex": "^a$",
}

#: Patterns simple enough to satisfy by construction: ``^[class]{n,m}$`` and a few literal forms.
_SIMPLE_CLASS = re.compile(r"^\^?\[([^\]]+)\](?:\{(\d+)(?:,(\d*))?\}|(\+|\*))?\$?$")


def _from_class(cls: str, count: int) -> str | None:
    """A string of ``count`` characters from a character class like ``a-z0-9_``."""
    if cls.startswith("^"):
        return None
    chars: list[str] = []
    i = 0
    while i < len(cls):
        if i + 2 < len(cls) and cls[i + 1] == "-":
            chars.append(cls[i])
            i += 3
        elif cls[i] == "\\" and i + 1 < len(cls):
            chars.append({"d": "1", "w": "a", "s": " "}.get(cls[i + 1], cls[i + 1]))
            i += 2
        else:
            chars.append(cls[i])
            i += 1
    return (chars[0] * count) if chars else None


def _pattern_sample(pattern: str, min_len: int, max_len: int | None) -> str | None:
    match = _SIMPLE_CLASS.match(pattern)
    if match is None:
        return None
    lo = int(match.group(2)) if match.group(2) else (0 if match.group(4) == "*" else 1)
    count = max(lo, min_len, 1 if match.group(4) != "*" else 0)
    upper = match.group(3)
    if match.group(2) and upper is None and match.group(3) is None:
        count = lo  # exactly {n}
    if max_len is not None:
        count = min(count, max_len)
    value = _from_class(match.group(1), count)
    if value is None:
        return None
    try:
        return value if re.fullmatch(pattern.strip("^$"), value) else None
    except re.error:
        return None


def _string(schema: dict[str, Any], name: str | None) -> str:
    fmt = schema.get("format")
    raw_min, raw_max = schema.get("minLength"), schema.get("maxLength")
    min_len: int = raw_min if isinstance(raw_min, int) else 0
    max_len: int | None = raw_max if isinstance(raw_max, int) else None
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        sampled = _pattern_sample(pattern, min_len, max_len)
        if sampled is not None:
            return sampled
    if isinstance(fmt, str) and fmt in FORMAT_SAMPLES:
        return str(FORMAT_SAMPLES[fmt])
    lowered = (name or "").lower()
    if "email" in lowered:
        value = "scanner@example.com"
    elif lowered.endswith(("url", "uri")) or "callback" in lowered or "webhook" in lowered:
        value = "https://example.com/"
    elif "password" in lowered:
        value = "Sc4nner-Passw0rd!"
    else:
        value = "scan" if not lowered else re.sub(r"[^a-z0-9]", "", lowered)[:12] or "scan"
    if len(value) < min_len:
        value = value + "x" * (min_len - len(value))
    if max_len is not None:
        value = value[: max(max_len, min_len)]
    return value


def _number(schema: dict[str, Any], integer: bool) -> int | float:
    lo = schema.get("minimum")
    hi = schema.get("maximum")
    xlo = schema.get("exclusiveMinimum")
    xhi = schema.get("exclusiveMaximum")
    low: float | None = float(lo) if isinstance(lo, int | float) and not isinstance(lo, bool) else None
    high: float | None = float(hi) if isinstance(hi, int | float) and not isinstance(hi, bool) else None
    if isinstance(xlo, int | float) and not isinstance(xlo, bool):
        low = float(xlo) + (1 if integer else 0.5)
    if isinstance(xhi, int | float) and not isinstance(xhi, bool):
        high = float(xhi) - (1 if integer else 0.5)
    value = 1.0
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    multiple = schema.get("multipleOf")
    if isinstance(multiple, int | float) and not isinstance(multiple, bool) and multiple > 0:
        value = multiple * max(1, -(-value // multiple))
        if high is not None and value > high:
            value = multiple * (high // multiple)
    if integer:
        return math.ceil(value)
    return value


def sample_value(spec: Spec, schema: Any, name: str | None = None, *, depth: int = 0,
                 for_request: bool = True) -> Any:
    """A value valid for ``schema``. ``readOnly`` properties are left out of request objects."""
    schema, _ = spec.resolve(schema, ())
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return "scan"
    for key in ("const", "example", "default"):
        if key in schema:
            return schema[key]
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return examples[0]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return next((e for e in enum if e is not None), enum[0])
    for key in ("allOf",):
        parts = schema.get(key)
        if isinstance(parts, list) and parts:
            merged: dict[str, Any] = {}
            for part in parts:
                value = sample_value(spec, part, name, depth=depth + 1, for_request=for_request)
                if isinstance(value, dict):
                    merged.update(value)
                else:
                    return value
            if "properties" in schema:
                own = {k: v for k, v in schema.items() if k != "allOf"}
                extra = sample_value(spec, own, name, depth=depth + 1, for_request=for_request)
                if isinstance(extra, dict):
                    merged.update(extra)
            return merged
    for key in ("oneOf", "anyOf"):
        parts = schema.get(key)
        if isinstance(parts, list) and parts:
            return sample_value(spec, parts[0], name, depth=depth + 1, for_request=for_request)
    kinds = types_of(schema) - {"null"}
    if not kinds:
        kinds = {"object"} if "properties" in schema else ({"array"} if "items" in schema else {"string"})
    kind = sorted(kinds)[0] if len(kinds) > 1 else next(iter(kinds))
    if kind == "string":
        return _string(schema, name)
    if kind == "integer":
        return _number(schema, integer=True)
    if kind == "number":
        return _number(schema, integer=False)
    if kind == "boolean":
        return False
    if kind == "array":
        raw_count = schema.get("minItems")
        count = max(1, min(raw_count if isinstance(raw_count, int) else 1, 5))
        item = sample_value(spec, schema.get("items", {}), name, depth=depth + 1, for_request=for_request)
        if schema.get("uniqueItems") and count > 1:
            return [item]
        return [item] * count
    if kind == "object":
        return sample_object(spec, schema, depth=depth, for_request=for_request)
    return "scan"


def sample_object(spec: Spec, schema: dict[str, Any], *, depth: int = 0, for_request: bool = True) -> dict[str, Any]:
    """Every declared property that may be sent (required ones first), each with a valid value."""
    props = schema.get("properties")
    out: dict[str, Any] = {}
    if not isinstance(props, dict):
        return out
    for prop, raw in props.items():
        sub, _ = spec.resolve(raw, ())
        if not isinstance(sub, dict):
            continue
        if for_request and sub.get("readOnly") is True:
            continue
        if not for_request and sub.get("writeOnly") is True:
            continue
        out[str(prop)] = sample_value(spec, sub, str(prop), depth=depth + 1, for_request=for_request)
    return out


def without_accounts(value: Any, names: Iterable[str]) -> Any:
    """``value`` (a sample request body) with a real account's user name replaced by a throwaway one when the body
    also carries a password: a document's example login is often a real user's, and probes that vary the other
    fields would be failed logins that lock that account out (five wrong passwords is a common limit)."""
    if not isinstance(value, dict) or not any("pass" in str(k).lower() for k in value):
        return value
    known = {n.lower() for n in names if n}
    out = dict(value)
    for key, field in value.items():
        if isinstance(field, str) and field.lower() in known:
            out[key] = "bscan" + secrets.token_hex(5) + ("@example.com" if "@" in field else "")
    return out
