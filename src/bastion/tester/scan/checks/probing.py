"""Helpers shared by the API3/API4/API7/API8/API9 checks: choosing operations and identities,
reading schemas, comparing responses and building findings.

Nothing here sends a request on its own; every request goes through the :class:`ScanContext`.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote, quote_plus

from bastion.tester.audit.context import Operation, Spec
from bastion.tester.scan.interface import CheckInfo, Exchange, Identity, ScanContext, ScanFinding, Skip

__all__ = [
    "BodyField",
    "allows_extra",
    "body_fields",
    "caller",
    "declared_path",
    "excerpt_equal",
    "finding",
    "json_request_schema",
    "normalized",
    "object_properties",
    "random_marker",
    "resolve",
    "response_schema",
    "skip",
    "success",
]

_JSON_MEDIA = re.compile(r"^application/(?:[\w.+-]+\+)?json$", re.IGNORECASE)


def finding(info: CheckInfo, target: str, message: str, *evidence: Exchange) -> ScanFinding:
    return ScanFinding(check=info, target=target, message=message, evidence=tuple(evidence))


def pair_finding(info: CheckInfo, target: str, message: str, *evidence: Exchange) -> ScanFinding:
    """A finding proven by comparing its last two exchanges: both are its reproduce commands."""
    return ScanFinding(check=info, target=target, message=message, evidence=tuple(evidence), reproduce=2)


def skip(info: CheckInfo, reason: str) -> Skip:
    return Skip(check=info, reason=reason)


def success(ex: Exchange) -> bool:
    """A 2xx answer."""
    return 200 <= ex.status < 300


def random_marker(prefix: str = "bastion") -> str:
    """A short random token that cannot occur by chance in a response."""
    return f"{prefix}{secrets.token_hex(6)}"


def caller(ctx: ScanContext, op: Operation | None = None) -> Identity:
    """Who to send a probe as: the first user when there is one (secured operations need
    credentials to get past authentication), else the anonymous identity."""
    if op is not None and op.public:
        return ctx.users[0] if ctx.users else ctx.anonymous
    return ctx.users[0] if ctx.users else (ctx.admin or ctx.anonymous)


def declared_path(spec: Spec, base: str, absolute: str) -> bool:
    """Whether ``absolute`` (a path on the origin) is matched by a path template of the spec
    under ``base``."""
    if base and not (absolute == base or absolute.startswith(base + "/")):
        return False
    rel = absolute[len(base):] or "/"
    return any(_template_regex(op.template).fullmatch(rel.rstrip("/") or "/") for op in spec.operations)


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template.rstrip("/") or "/")
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


# -- schemas ------------------------------------------------------------------------------
def json_request_schema(spec: Spec, op: Operation) -> dict[str, Any] | None:
    """The schema of the operation's JSON request body, ``$ref`` resolved, or None."""
    body, bpath = spec.resolve(op.node.get("requestBody"), (*op.path, "requestBody"))
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, dict):
        return None
    for media, node in content.items():
        if _JSON_MEDIA.match(str(media).split(";")[0].strip()) and isinstance(node, dict) and "schema" in node:
            schema, _ = spec.resolve(node["schema"], (*bpath, "content", media, "schema"))
            return schema if isinstance(schema, dict) else None
    return None


def response_schema(spec: Spec, op: Operation, status: int) -> dict[str, Any] | None:
    """The JSON schema declared for ``status`` (exact, then ``2XX``-style, then ``default``)."""
    by_status: dict[str, dict[str, Any]] = {}
    for code, node, rpath in spec.responses(op):
        content = node.get("content")
        if not isinstance(content, dict):
            continue
        for media, media_node in content.items():
            if (_JSON_MEDIA.match(str(media).split(";")[0].strip()) and isinstance(media_node, dict)
                    and "schema" in media_node):
                schema, _ = spec.resolve(media_node["schema"], (*rpath, "content", media, "schema"))
                if isinstance(schema, dict):
                    by_status.setdefault(code.upper(), schema)
    for key in (str(status), f"{str(status)[0]}XX", "DEFAULT"):
        if key in by_status:
            return by_status[key]
    return None


def resolve(spec: Spec, node: Any) -> dict[str, Any] | None:
    out, _ = spec.resolve(node, ())
    return out if isinstance(out, dict) else None


def object_properties(spec: Spec, schema: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The properties an object schema declares, merged over ``allOf``, ``anyOf`` and ``oneOf``
    (a field of any alternative counts as declared); None when it declares none (free-form)."""
    props: dict[str, dict[str, Any]] = {}
    declared = False
    stack: list[dict[str, Any]] = [schema]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        own = current.get("properties")
        if isinstance(own, dict):
            declared = True
            for name, raw in own.items():
                sub = resolve(spec, raw)
                if sub is not None:
                    props.setdefault(str(name), sub)
        for key in ("allOf", "anyOf", "oneOf"):
            alts = current.get(key)
            if isinstance(alts, list):
                stack.extend(s for s in (resolve(spec, a) for a in alts) if s is not None)
    return props if declared else None


def allows_extra(spec: Spec, schema: dict[str, Any]) -> bool:
    """Whether the schema declares a map (``additionalProperties`` with a schema or true):
    then properties it does not name are expected."""
    extra = schema.get("additionalProperties")
    if extra is True or isinstance(extra, dict) or schema.get("patternProperties"):
        return True
    for key in ("allOf", "anyOf", "oneOf"):
        alts = schema.get(key)
        if isinstance(alts, list) and any(allows_extra(spec, s) for s in (resolve(spec, a) for a in alts) if s):
            return True
    return False


@dataclass(frozen=True, slots=True)
class BodyField:
    """A top-level property of a JSON request body."""

    name: str
    schema: dict[str, Any]
    read_only: bool


def body_fields(spec: Spec, op: Operation) -> list[BodyField]:
    schema = json_request_schema(spec, op)
    if schema is None:
        return []
    props = object_properties(spec, schema) or {}
    return [BodyField(name, sub, sub.get("readOnly") is True) for name, sub in props.items()]


# -- comparing responses --------------------------------------------------------------------
def normalized(ex: Exchange, remove: Iterable[str] = ()) -> str:
    """The response body with echoed inputs removed, for comparing two responses."""
    text = ex.text
    for value in sorted({v for v in remove if v}, key=len, reverse=True):
        for form in _echo_forms(value):
            text = text.replace(form, "")
    return text


def _echo_forms(value: str) -> list[str]:
    """The ways an API may echo ``value``: as is, JSON-escaped, HTML-escaped, URL-encoded."""
    dumped = json.dumps(value)[1:-1]
    return list(dict.fromkeys([value, dumped, escape(value), quote(value), quote_plus(value),
                               json.dumps(value, ensure_ascii=False)[1:-1]]))


def excerpt_equal(a: Exchange, b: Exchange, remove: Sequence[str] = ()) -> bool:
    """Two responses are the same: same status and the same body once echoed inputs are removed."""
    return a.status == b.status and normalized(a, remove) == normalized(b, remove)
