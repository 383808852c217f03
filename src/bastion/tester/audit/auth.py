"""Authentication rules on the OpenAPI document (API2, API5)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from bastion.tester.audit.context import Operation, Spec
from bastion.tester.audit.interface import Hit, Rule, RuleInfo, Severity

#: Parameter names that carry credentials (compared without '-' and '_', case-insensitively).
CREDENTIAL_NAMES = frozenset(
    {
        "apikey",
        "key",
        "token",
        "accesstoken",
        "authtoken",
        "idtoken",
        "refreshtoken",
        "password",
        "passwd",
        "secret",
        "clientsecret",
        "sessionid",
        "session",
        "jwt",
        "auth",
        "authorization",
        "signature",
        "sig",
    }
)
ADMIN_SEGMENT = re.compile(
    r"^_?(admin|administration|administrator|internal|manage|management|debug|private|"
    r"actuator|ops|superuser|sysadmin|backoffice)$",
    re.IGNORECASE,
)
LIFETIME_WORDS = re.compile(r"\b(exp|expir\w*|lifetime|short[- ]lived|ttl|minutes?|hours?|valid for)\b", re.I)


def _norm(name: str) -> str:
    return name.replace("-", "").replace("_", "").lower()


BASIC = RuleInfo(
    id="BAST-AUTH-001",
    title="HTTP Basic authentication",
    category="API2:2023",
    cwe=522,
    severity=Severity.MEDIUM,
    scope="openapi",
    checks="A security scheme uses HTTP Basic: a long-lived password travels, only base64-encoded, on every request.",
    fix="Replace the `type: http, scheme: basic` scheme by short-lived bearer tokens (OAuth 2 / JWT) or API keys "
    "sent in a header; if Basic must stay, serve it only over TLS (`listen.tls`) and rate-limit it.",
)


def basic_auth(spec: Spec) -> Iterator[Hit]:
    for name, (scheme, path) in spec.security_schemes.items():
        if scheme.get("type") == "http" and str(scheme.get("scheme", "")).lower() == "basic":
            yield Hit(f"security scheme {name!r} is HTTP Basic", spec.source, (*path, "scheme"))


KEY_IN_URL = RuleInfo(
    id="BAST-AUTH-002",
    title="API key sent in the URL",
    category="API2:2023",
    cwe=598,
    severity=Severity.HIGH,
    scope="openapi",
    checks="An apiKey security scheme is sent `in: query`: URLs end up in access logs, proxies, browser history "
    "and Referer headers.",
    fix="Declare the key `in: header` (e.g. `name: X-API-Key`) and stop accepting it in the query string.",
)


def key_in_url(spec: Spec) -> Iterator[Hit]:
    for name, (scheme, path) in spec.security_schemes.items():
        if scheme.get("type") == "apiKey" and scheme.get("in") == "query":
            yield Hit(f"API key scheme {name!r} is sent in the query string", spec.source, (*path, "in"))


CREDENTIAL_PARAM = RuleInfo(
    id="BAST-AUTH-003",
    title="Credential in a URL parameter",
    category="API2:2023",
    cwe=598,
    severity=Severity.HIGH,
    scope="openapi",
    checks="A query or path parameter is named like a credential (token, api_key, password, secret...).",
    fix="Move the credential to a header (Authorization or an apiKey scheme `in: header`) or the request body.",
)


def credential_param(spec: Spec) -> Iterator[Hit]:
    for op in spec.operations:
        for p in op.parameters:
            if p.location in ("query", "path") and _norm(p.name) in CREDENTIAL_NAMES:
                yield Hit(
                    f"{op.label}: {p.location} parameter {p.name!r} carries a credential in the URL",
                    spec.source,
                    p.path,
                )


BEARER_FORMAT = RuleInfo(
    id="BAST-AUTH-004",
    title="Bearer scheme without a token format",
    category="API2:2023",
    cwe=287,
    severity=Severity.LOW,
    scope="openapi",
    checks="An `http` `bearer` scheme has no `bearerFormat`: clients and the gateway cannot tell what the token is "
    "or how it must be validated.",
    fix="Add `bearerFormat: JWT` (or the token type you issue) and document its signature algorithm and issuer.",
)


def bearer_format(spec: Spec) -> Iterator[Hit]:
    for name, (scheme, path) in spec.security_schemes.items():
        if (
            scheme.get("type") == "http"
            and str(scheme.get("scheme", "")).lower() == "bearer"
            and not scheme.get("bearerFormat")
        ):
            yield Hit(f"bearer scheme {name!r} has no bearerFormat", spec.source, path)


TOKEN_LIFETIME = RuleInfo(
    id="BAST-AUTH-005",
    title="JWT without lifetime guidance",
    category="API2:2023",
    cwe=613,
    severity=Severity.LOW,
    scope="openapi",
    checks="A JWT bearer or OAuth 2 scheme does not say how long tokens live: long-lived tokens stay usable "
    "after they leak.",
    fix="Issue short-lived tokens (minutes, with an `exp` claim) and say so in the scheme's `description`; "
    "refresh them with a refresh token instead of extending their lifetime.",
)


def token_lifetime(spec: Spec) -> Iterator[Hit]:
    for name, (scheme, path) in spec.security_schemes.items():
        jwt = scheme.get("type") == "http" and str(scheme.get("bearerFormat", "")).upper() == "JWT"
        if (jwt or scheme.get("type") == "oauth2") and not LIFETIME_WORDS.search(str(scheme.get("description", ""))):
            yield Hit(f"scheme {name!r} issues tokens but says nothing about their lifetime", spec.source, path)


UNSECURED = RuleInfo(
    id="BAST-AUTH-006",
    title="Operation without security",
    category="API2:2023",
    cwe=306,
    severity=Severity.HIGH,
    scope="openapi",
    checks="An operation has no security requirement and is not explicitly public (`security: []`), or one of "
    "its alternatives is `{}` (authentication optional).",
    fix="Add a `security` requirement to the operation or the document root; write `security: []` on the "
    "operations that are public on purpose (Bastion then routes them as public).",
)


def unsecured(spec: Spec) -> Iterator[Hit]:
    for op in spec.operations:
        if op.security is None:
            yield Hit(
                f"{op.label} has no security requirement and is not marked public with `security: []`",
                spec.source,
                op.path,
            )
        elif op.security and not op.secured:
            yield Hit(
                f"{op.label} makes authentication optional (an empty `{{}}` alternative)", spec.source, op.security_path
            )


UNDEFINED_SCHEME = RuleInfo(
    id="BAST-AUTH-007",
    title="Security requirement names an undefined scheme",
    category="API2:2023",
    cwe=287,
    severity=Severity.HIGH,
    scope="openapi",
    checks="A `security` requirement refers to a scheme missing from `components.securitySchemes`.",
    fix="Define the scheme under `components.securitySchemes` or correct the name in the requirement.",
)


def undefined_scheme(spec: Spec) -> Iterator[Hit]:
    defined = spec.security_schemes
    seen: set[tuple[Any, ...]] = set()
    requirements: list[tuple[list[Any], tuple[str | int, ...]]] = []
    if isinstance(spec.data.get("security"), list):
        requirements.append((spec.data["security"], ("security",)))
    for op in spec.operations:
        if isinstance(op.node.get("security"), list):
            requirements.append((op.node["security"], (*op.path, "security")))
    for reqs, path in requirements:
        for i, req in enumerate(reqs):
            for name in req if isinstance(req, dict) else ():
                if name not in defined and (path, name) not in seen:
                    seen.add((path, name))
                    yield Hit(f"security scheme {name!r} is not defined", spec.source, (*path, i, name))


def _requirement_key(op: Operation) -> frozenset[frozenset[tuple[str, tuple[str, ...]]]]:
    out: set[frozenset[tuple[str, tuple[str, ...]]]] = set()
    for req in op.security or []:
        if isinstance(req, dict):
            out.add(
                frozenset((str(k), tuple(sorted(map(str, v)) if isinstance(v, list) else ())) for k, v in req.items())
            )
    return frozenset(out)


ADMIN_SECURITY = RuleInfo(
    id="BAST-AUTH-008",
    title="Admin operation secured like any other",
    category="API5:2023",
    cwe=285,
    severity=Severity.HIGH,
    scope="openapi",
    checks="A path that looks administrative (/admin, /internal, /manage, /debug...) is public, or has exactly "
    "the same security requirement as ordinary operations, so any authenticated caller may reach it.",
    fix="Give admin operations their own scheme or scopes (e.g. `oauth2: [admin]`), or remove them from the "
    "public document; Bastion routes only declared operations, so an undeclared admin API stays unreachable.",
)


def admin_security(spec: Spec) -> Iterator[Hit]:
    def is_admin(op: Operation) -> bool:
        return any(ADMIN_SEGMENT.match(seg) for seg in op.template.split("/"))

    ordinary = {_requirement_key(op) for op in spec.operations if not is_admin(op) and op.secured}
    for op in spec.operations:
        if not is_admin(op):
            continue
        if op.public or op.security is None:
            yield Hit(f"{op.label} looks administrative but needs no authentication", spec.source, op.path)
        elif _requirement_key(op) in ordinary:
            yield Hit(
                f"{op.label} looks administrative but has the same security as ordinary operations",
                spec.source,
                op.security_path,
            )


LEGACY_FLOW = RuleInfo(
    id="BAST-AUTH-009",
    title="Deprecated OAuth 2 flow",
    category="API2:2023",
    cwe=287,
    severity=Severity.MEDIUM,
    scope="openapi",
    checks="An OAuth 2 scheme offers the implicit flow (token in the URL fragment) or the resource owner password "
    "flow (the client sees the user's password); OAuth 2.0 Security Best Current Practice forbids both.",
    fix="Use the authorization code flow with PKCE for users and client credentials for services.",
)


def legacy_flow(spec: Spec) -> Iterator[Hit]:
    for name, (scheme, path) in spec.security_schemes.items():
        flows = scheme.get("flows")
        if scheme.get("type") == "oauth2" and isinstance(flows, dict):
            for flow in ("implicit", "password"):
                if flow in flows:
                    yield Hit(f"OAuth 2 scheme {name!r} offers the {flow} flow", spec.source, (*path, "flows", flow))


RULES: tuple[Rule[Spec], ...] = (
    Rule(BASIC, basic_auth),
    Rule(KEY_IN_URL, key_in_url),
    Rule(CREDENTIAL_PARAM, credential_param),
    Rule(BEARER_FORMAT, bearer_format),
    Rule(TOKEN_LIFETIME, token_lifetime),
    Rule(UNSECURED, unsecured),
    Rule(UNDEFINED_SCHEME, undefined_scheme),
    Rule(ADMIN_SECURITY, admin_security),
    Rule(LEGACY_FLOW, legacy_flow),
)
