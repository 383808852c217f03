"""Transport and browser rules (API2, API8): plain-HTTP servers and endpoints, CORS and cookies."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from bastion.config.yamlsrc import FieldPath
from bastion.tester.audit.context import Spec
from bastion.tester.audit.interface import Hit, Rule, RuleInfo, Severity

_VAR = re.compile(r"\{([^{}]+)\}")


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 and ::1."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_urls(spec: Spec) -> Iterator[tuple[str, FieldPath, dict[str, Any]]]:
    """Every server URL (document, path and operation level), variables replaced by their defaults."""
    places: list[tuple[Any, FieldPath]] = [(spec.data.get("servers"), ("servers",))]
    paths = spec.data.get("paths")
    for template, item in paths.items() if isinstance(paths, dict) else ():
        if isinstance(item, dict):
            places.append((item.get("servers"), ("paths", template, "servers")))
    for op in spec.operations:
        places.append((op.node.get("servers"), (*op.path, "servers")))
    for servers, path in places:
        for i, server in enumerate(servers if isinstance(servers, list) else []):
            if isinstance(server, dict) and isinstance(server.get("url"), str):
                yield expand_server_url(server), (*path, i, "url"), server


def expand_server_url(server: dict[str, Any]) -> str:
    variables = server.get("variables") if isinstance(server.get("variables"), dict) else {}

    def default(m: re.Match[str]) -> str:
        var = variables.get(m.group(1)) if isinstance(variables, dict) else None
        return str(var.get("default", m.group(0))) if isinstance(var, dict) else m.group(0)

    return _VAR.sub(default, str(server["url"]))


PLAIN_HTTP_SERVER = RuleInfo(
    id="BAST-TRN-001",
    title="Server reachable over plain HTTP",
    category="API8:2023",
    cwe=319,
    severity=Severity.HIGH,
    scope="openapi",
    checks="A `servers` URL uses http:// on a non-loopback host: credentials and data cross the network in clear.",
    fix="Use https:// server URLs and terminate TLS at Bastion (`listen.tls` with a certificate; HSTS is on by "
    "default).",
)


def plain_http_server(spec: Spec) -> Iterator[Hit]:
    for url, path, _ in server_urls(spec):
        parts = urlsplit(url)
        if parts.scheme.lower() == "http" and not is_loopback(parts.hostname or ""):
            yield Hit(f"server {url} is plain HTTP", spec.source, path)


PLAIN_HTTP_AUTH = RuleInfo(
    id="BAST-TRN-002",
    title="Authorization endpoint over plain HTTP",
    category="API2:2023",
    cwe=319,
    severity=Severity.HIGH,
    scope="openapi",
    checks="An OAuth 2 / OpenID Connect URL (authorizationUrl, tokenUrl, refreshUrl, openIdConnectUrl) is http://.",
    fix="Use https:// for every OAuth 2 and OpenID Connect endpoint.",
)


def plain_http_auth(spec: Spec) -> Iterator[Hit]:
    for name, (scheme, path) in spec.security_schemes.items():
        urls: list[tuple[Any, FieldPath]] = [(scheme.get("openIdConnectUrl"), (*path, "openIdConnectUrl"))]
        flows = scheme.get("flows")
        for flow, fnode in flows.items() if isinstance(flows, dict) else ():
            if isinstance(fnode, dict):
                urls += [
                    (fnode.get(k), (*path, "flows", flow, k)) for k in ("authorizationUrl", "tokenUrl", "refreshUrl")
                ]
        for url, upath in urls:
            if (
                isinstance(url, str)
                and url.lower().startswith("http://")
                and not is_loopback(urlsplit(url).hostname or "")
            ):
                yield Hit(f"scheme {name!r}: {upath[-1]} {url} is plain HTTP", spec.source, upath)


def _header_values(header: dict[str, Any]) -> list[Any]:
    schema = header.get("schema") if isinstance(header.get("schema"), dict) else {}
    values: list[Any] = [header.get("example")]
    if isinstance(header.get("examples"), dict):
        values += [e.get("value") for e in header["examples"].values() if isinstance(e, dict)]
    if isinstance(schema, dict):
        values += [schema.get("default"), schema.get("const"), schema.get("example")]
        values += list(schema.get("enum") or []) + list(schema.get("examples") or [])
    return values


WILDCARD_CORS = RuleInfo(
    id="BAST-TRN-003",
    title="CORS open to every origin",
    category="API8:2023",
    cwe=942,
    severity=Severity.MEDIUM,
    scope="openapi",
    checks="A response declares `Access-Control-Allow-Origin: *`: any web page may read the API's responses from "
    "a visitor's browser.",
    fix="Allow only the origins of your own front-ends (an explicit list), never `*` for authenticated APIs; "
    "with Bastion, list them in `policies.cors.allow_origins` (the API's own CORS headers are then dropped).",
)


def wildcard_cors(spec: Spec) -> Iterator[Hit]:
    seen: set[FieldPath] = set()
    for op in spec.operations:
        for _, resp, rpath in spec.responses(op):
            headers = resp.get("headers")
            for hname, raw in headers.items() if isinstance(headers, dict) else ():
                if str(hname).lower() != "access-control-allow-origin":
                    continue
                header, hpath = spec.resolve(raw, (*rpath, "headers", hname))
                if isinstance(header, dict) and "*" in _header_values(header) and hpath not in seen:
                    seen.add(hpath)
                    yield Hit(f"{op.label} allows every origin (Access-Control-Allow-Origin: *)", spec.source, hpath)


COOKIE_KEY = RuleInfo(
    id="BAST-TRN-004",
    title="Credential in a cookie",
    category="API8:2023",
    cwe=352,
    severity=Severity.MEDIUM,
    scope="openapi",
    checks="An apiKey scheme is sent `in: cookie`: browsers attach it to cross-site requests (CSRF), and CORS "
    "settings decide who may read the answers.",
    fix="Prefer an Authorization header for APIs; if a cookie is required, make it `Secure; HttpOnly; "
    "SameSite=Strict`, require a CSRF token on state-changing operations and allow only your own origins.",
)


def cookie_key(spec: Spec) -> Iterator[Hit]:
    for name, (scheme, path) in spec.security_schemes.items():
        if scheme.get("type") == "apiKey" and scheme.get("in") == "cookie":
            yield Hit(f"API key scheme {name!r} is sent in a cookie", spec.source, (*path, "in"))


RULES: tuple[Rule[Spec], ...] = (
    Rule(PLAIN_HTTP_SERVER, plain_http_server),
    Rule(PLAIN_HTTP_AUTH, plain_http_auth),
    Rule(WILDCARD_CORS, wildcard_cors),
    Rule(COOKIE_KEY, cookie_key),
)
