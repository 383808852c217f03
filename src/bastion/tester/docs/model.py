"""What the consumer documentation says, derived from a loaded gateway configuration.

Everything here is plain data; :mod:`bastion.tester.docs.render` turns it into Markdown and
HTML. Text taken from OpenAPI documents is kept as text: the renderers escape it.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from bastion.config import LoadedConfig, ResolvedRoute
from bastion.config.openapi import OpenAPIDocument
from bastion.stages.auth import auth_stage

SAMPLE_FORMATS = {
    "uuid": "0b7f1c2e-8d4a-4f6b-9c3e-5a1d2e3f4a5b",
    "date": "2024-01-31",
    "date-time": "2024-01-31T12:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "ipv4": "192.0.2.1",
}


@dataclass(frozen=True)
class SchemeDoc:
    """How to present one security scheme."""

    name: str
    kind: str  # "API key in header X-API-Key", "Bearer token (JWT)", ...
    description: str
    #: Shell fragments added to curl for this scheme (already quoted).
    curl_args: tuple[str, ...]
    #: Shell variables the example expects, with what to put in them.
    variables: tuple[tuple[str, str], ...]
    #: Extra steps (e.g. obtaining an OAuth 2 token), one shell command each.
    setup: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthOption:
    """One way to authenticate an operation: all these schemes together, with these scopes."""

    schemes: tuple[str, ...]
    scopes: tuple[str, ...]


@dataclass
class OperationDoc:
    """One route as a consumer sees it."""

    method: str
    path: str
    service: str
    route_id: str
    summary: str
    description: str
    public: bool
    auth: list[AuthOption]
    documented_auth: bool
    max_body_bytes: int
    curl: str
    #: What the gateway does about authentication: "unavailable" (every request gets 401:
    #: nothing here can verify its credentials), "delegated" (the API checks them),
    #: "verified" (the gateway checks them) or "" (public).
    gateway_auth: str = ""

    @property
    def anchor(self) -> str:
        return "op-" + re.sub(r"[^A-Za-z0-9]+", "-", f"{self.method}-{self.path}").strip("-").lower()


@dataclass
class ServiceDoc:
    name: str
    title: str
    version: str
    schemes: dict[str, SchemeDoc]
    read_timeout: float
    total_timeout: float


@dataclass(frozen=True)
class ErrorDoc:
    status: int
    title: str
    meaning: str


@dataclass
class Site:
    """The whole documentation."""

    title: str
    base_url: str
    tls: bool
    services: list[ServiceDoc]
    operations: list[OperationDoc]
    limits: dict[str, str]
    errors: list[ErrorDoc]
    rejects: list[str]
    key_guidance: list[str]
    problem_example: str
    notes: list[str] = field(default_factory=list)


ERRORS: tuple[ErrorDoc, ...] = (
    ErrorDoc(
        400,
        "Bad Request",
        "The request is malformed or ambiguous: invalid HTTP framing, an encoded slash, "
        "dot segment, NUL byte or bad percent-escape in the path, characters that must be percent-encoded; "
        "or (where validation is enabled) parameters or a body that do not match the API's schema.",
    ),
    ErrorDoc(
        401,
        "Unauthorized",
        "Credentials are missing, malformed, expired or wrong; or the operation is not available "
        "yet (marked so below: the gateway cannot verify its credentials, so it refuses every request). "
        "The `WWW-Authenticate` header says which scheme is expected.",
    ),
    ErrorDoc(
        403,
        "Forbidden",
        "The credentials are valid but do not allow this operation, or a security policy "
        "refused the request (for example an injection attempt). Retrying the same request will not help.",
    ),
    ErrorDoc(
        404,
        "Not Found",
        "No declared operation matches the path: the gateway forwards only what the API "
        "documents (deny by default). The API itself may also answer 404 for a missing object.",
    ),
    ErrorDoc(
        405,
        "Method Not Allowed",
        "The path exists but not with this method; the `Allow` header lists the methods that do.",
    ),
    ErrorDoc(413, "Content Too Large", "The body is larger than the operation's limit (see Limits)."),
    ErrorDoc(
        429,
        "Too Many Requests",
        "You sent too many requests (where rate limiting is enabled). Wait the "
        "number of seconds in `Retry-After` before retrying.",
    ),
    ErrorDoc(
        502,
        "Bad Gateway",
        "The API behind the gateway failed to answer or answered something invalid. "
        "Safe (idempotent) requests may be retried with backoff.",
    ),
    ErrorDoc(
        503,
        "Service Unavailable",
        "The API, or a service the gateway needs to check your request, is "
        "unavailable; the gateway refuses rather than let requests through unchecked. Retry later.",
    ),
    ErrorDoc(
        504,
        "Gateway Timeout",
        "The API did not answer in time (see Limits). The operation may or may not "
        "have happened: check before repeating a non-idempotent request.",
    ),
)

REJECTS: tuple[str, ...] = (
    "Paths and methods the API does not declare (404 and 405): nothing undocumented is reachable.",
    "TRACE (unless declared), CONNECT and protocol upgrades such as WebSocket (501).",
    "Ambiguous message framing used for request smuggling: Content-Length together with Transfer-Encoding, "
    "repeated or invalid Content-Length, malformed chunked bodies, obsolete line folding (400).",
    "Paths with encoded slashes (%2F), encoded dot segments, paths that climb above the root, NUL bytes or "
    "invalid percent-escapes (400); request targets that are not origin-form.",
    "Request heads, header counts, URLs and bodies above the limits below (431, 414, 413).",
    "Clients that send a request head or body too slowly (408 or a closed connection).",
    "X-Forwarded-For, Forwarded and X-Request-ID from clients that are not trusted proxies: they are replaced, "
    "never believed.",
)

KEY_GUIDANCE: tuple[str, ...] = (
    "Storage: keep API keys, client secrets and tokens in a secret manager or environment variables of your "
    "server, never in source code, mobile apps, browser code or URLs. Do not log them.",
    "Transport: send credentials only in headers, only over HTTPS, and verify the gateway's certificate; never "
    "disable certificate verification in clients.",
    "Scope: use one key per application and environment, with the fewest scopes the application needs.",
    "Rotation: rotate keys regularly and whenever a person with access leaves; create the new key, deploy it, "
    "then revoke the old one so there is no downtime.",
    "Revocation: if a key or token may have leaked (committed to a repository, pasted in a ticket), revoke it "
    "at once and tell the API's operators the time window and the request IDs you saw.",
    "Tokens: prefer short-lived access tokens and refresh them; treat refresh tokens like passwords.",
)


def _env_name(text: str) -> str:
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+", text)
    return "_".join(w.upper() for w in words) or "VALUE"


def _dq(text: str) -> str:
    """Escape text for the inside of a double-quoted shell string."""
    return re.sub(r'([\\"$`])', r"\\\1", text)


def scheme_doc(name: str, scheme: dict[str, Any]) -> SchemeDoc:
    """Describe a security scheme and how curl sends it."""
    kind = str(scheme.get("type", ""))
    desc = str(scheme.get("description", "") or "")
    var = _env_name(name)
    if kind == "apiKey":
        where, pname = str(scheme.get("in", "header")), str(scheme.get("name", "api_key"))
        if where == "query":
            return SchemeDoc(name, f"API key in query parameter {pname}", desc, (), ((var, "your API key"),))
        if where == "cookie":
            return SchemeDoc(
                name, f"API key in cookie {pname}", desc, (f'--cookie "{_dq(pname)}=${var}"',), ((var, "your API key"),)
            )
        return SchemeDoc(
            name, f"API key in header {pname}", desc, (f'-H "{_dq(pname)}: ${var}"',), ((var, "your API key"),)
        )
    if kind == "http":
        http = str(scheme.get("scheme", "")).lower()
        if http == "basic":
            return SchemeDoc(
                name,
                "HTTP Basic (user name and password)",
                desc,
                ('-u "$API_USER:$API_PASSWORD"',),
                (("API_USER", "your user name"), ("API_PASSWORD", "your password")),
            )
        fmt = str(scheme.get("bearerFormat", "") or "")
        label = f"Bearer token ({fmt})" if fmt else "Bearer token"
        return SchemeDoc(name, label, desc, (f'-H "Authorization: Bearer ${var}"',), ((var, "your access token"),))
    if kind in ("oauth2", "openIdConnect"):
        setup: list[str] = []
        flows = scheme.get("flows") if isinstance(scheme.get("flows"), dict) else {}
        cc = flows.get("clientCredentials") if isinstance(flows, dict) else None
        if isinstance(cc, dict) and isinstance(cc.get("tokenUrl"), str):
            setup.append(
                f'{var}=$(curl -sS -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials '
                f"{shlex.quote(cc['tokenUrl'])} | jq -r .access_token)"
            )
        label = "OAuth 2 access token" if kind == "oauth2" else "OpenID Connect access token"
        return SchemeDoc(
            name, label, desc, (f'-H "Authorization: Bearer ${var}"',), ((var, "an access token"),), tuple(setup)
        )
    if kind == "mutualTLS":
        return SchemeDoc(name, "Mutual TLS (client certificate)", desc, ("--cert client.pem --key client-key.pem",), ())
    return SchemeDoc(name, f"{kind or 'unknown'} scheme", desc, (), ())


class _Resolver:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def __call__(self, node: Any) -> Any:
        seen: set[str] = set()
        while isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
            ref = node["$ref"]
            if ref in seen:
                return {}
            seen.add(ref)
            target: Any = self.doc
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part) if isinstance(target, dict) else None
            node = target
        return node


def sample(schema: Any, resolve: _Resolver, depth: int = 0) -> Any:
    """A plausible example value for a schema (examples and defaults first)."""
    s = resolve(schema)
    if not isinstance(s, dict) or depth > 5:
        return None
    for key in ("example", "default", "const"):
        if key in s:
            return s[key]
    if isinstance(s.get("examples"), list) and s["examples"]:
        return s["examples"][0]
    if isinstance(s.get("enum"), list) and s["enum"]:
        return s["enum"][0]
    for key in ("allOf", "oneOf", "anyOf"):
        if isinstance(s.get(key), list) and s[key]:
            if key == "allOf":
                merged: dict[str, Any] = {}
                for part in s[key]:
                    value = sample(part, resolve, depth + 1)
                    if isinstance(value, dict):
                        merged.update(value)
                return merged
            return sample(s[key][0], resolve, depth + 1)
    kind = s.get("type")
    kind = next((k for k in kind if k != "null"), None) if isinstance(kind, list) else kind
    if kind == "object" or "properties" in s:
        raw_props = s.get("properties")
        props: dict[str, Any] = raw_props if isinstance(raw_props, dict) else {}
        raw_required = s.get("required")
        required: list[Any] = raw_required if isinstance(raw_required, list) else list(props)
        return {k: sample(props[k], resolve, depth + 1) for k in required if k in props}
    if kind == "array":
        return [sample(s.get("items"), resolve, depth + 1)]
    if kind == "integer":
        return int(s.get("minimum", 1)) if isinstance(s.get("minimum"), (int, float)) else 1
    if kind == "number":
        return s.get("minimum", 1.0)
    if kind == "boolean":
        return True
    if kind == "string":
        fmt = str(s.get("format", ""))
        return SAMPLE_FORMATS.get(fmt, "string")
    return None


def _path_value(param: dict[str, Any], resolve: _Resolver) -> str:
    if "example" in param:
        return str(param["example"])
    schema = resolve(param.get("schema"))
    value = sample(schema, resolve) if isinstance(schema, dict) else None
    if value is None or value == "string":
        return _env_name(str(param.get("name", "id")))
    return str(value)


def curl_example(
    base_url: str,
    route: ResolvedRoute,
    operation: dict[str, Any] | None,
    doc: dict[str, Any] | None,
    scheme: SchemeDoc | None,
    query_key: tuple[str, str] | None = None,
) -> str:
    """A curl command for the operation, credentials taken from shell variables."""
    method = next(
        (m for m in ("GET", "POST", "PUT", "PATCH", "DELETE") if m in route.methods), sorted(route.methods)[0]
    )
    path = route.path
    resolve = _Resolver(doc or {})
    body: Any = None
    query: list[str] = []
    if operation is not None:
        params = [resolve(p) for p in operation.get("parameters", []) if isinstance(resolve(p), dict)]
        path_item = _path_item(doc, operation)
        params += [resolve(p) for p in (path_item or {}).get("parameters", []) if isinstance(resolve(p), dict)]
        for p in params:
            if p.get("in") == "path":
                path = path.replace("{" + str(p.get("name")) + "}", quote(_path_value(p, resolve), safe=""))
            elif p.get("in") == "query" and p.get("required") is True:
                query.append(f"{quote(str(p['name']), safe='')}={quote(_path_value(p, resolve), safe='')}")
        rb = resolve(operation.get("requestBody"))
        content = rb.get("content") if isinstance(rb, dict) else None
        if isinstance(content, dict) and isinstance(content.get("application/json"), dict):
            media = content["application/json"]
            body = media["example"] if "example" in media else sample(media.get("schema"), resolve)
    path = re.sub(r"\{([^{}]+)\}", lambda m: _env_name(m.group(1)), path)
    url = base_url.rstrip("/") + path + ("?" + "&".join(query) if query else "")
    parts = ["curl -sS"]
    if method != "GET":
        parts.append(f"-X {method}")
    if scheme is not None:
        parts.extend(scheme.curl_args)
    if body is not None and method in ("POST", "PUT", "PATCH"):
        parts.append("-H 'Content-Type: application/json'")
        parts.append("--data " + shlex.quote(json.dumps(body, separators=(",", ":"))))
    if query_key is not None:
        sep = "&" if "?" in url else "?"
        parts.append(f'"{_dq(url)}{sep}{_dq(query_key[0])}=${query_key[1]}"')
    else:
        parts.append(shlex.quote(url))
    return " \\\n  ".join([" ".join(parts[:2]), *parts[2:]]) if len(parts) > 3 else " ".join(parts)


def _path_item(doc: dict[str, Any] | None, operation: dict[str, Any]) -> dict[str, Any] | None:
    paths = doc.get("paths") if isinstance(doc, dict) else None
    for item in paths.values() if isinstance(paths, dict) else ():
        if isinstance(item, dict) and any(v is operation for v in item.values()):
            return item
    return None


def base_url_of(loaded: LoadedConfig) -> str:
    listen = loaded.config.listen
    host = listen.host
    if host in ("0.0.0.0", "::", ""):
        host = "localhost"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if listen.tls is not None else "http"
    default = 443 if scheme == "https" else 80
    port = "" if listen.port == default else f":{listen.port}"
    return f"{scheme}://{host}{port}"


def _auth_options(operation: dict[str, Any], doc: dict[str, Any]) -> list[AuthOption]:
    security = operation.get("security", doc.get("security"))
    out: list[AuthOption] = []
    for req in security if isinstance(security, list) else []:
        if isinstance(req, dict) and req:
            scopes = sorted({str(s) for v in req.values() if isinstance(v, list) for s in v})
            out.append(AuthOption(tuple(str(k) for k in req), tuple(scopes)))
    return out


def _gateway_auth(route: ResolvedRoute) -> str:
    auth = auth_stage(route.built)
    if auth is None:
        return ""
    if auth.delegated:
        return "delegated"
    return "unavailable" if auth.refusal is not None else "verified"


def human_size(n: int) -> str:
    """``65536`` -> ``64 KiB``; sizes that are not whole KiB/MiB stay in bytes."""
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def build_site(loaded: LoadedConfig, *, base_url: str | None = None) -> Site:
    """Gather what consumers need to know about every route of ``loaded``."""
    base = (base_url or base_url_of(loaded)).rstrip("/")
    cfg = loaded.config
    services: list[ServiceDoc] = []
    docs: dict[str, OpenAPIDocument] = loaded.openapi
    for svc in cfg.services:
        doc = docs.get(svc.name)
        data = doc.data if doc is not None else {}
        info = data.get("info") if isinstance(data.get("info"), dict) else {}
        comps = data.get("components") if isinstance(data.get("components"), dict) else {}
        raw_schemes = comps.get("securitySchemes") if isinstance(comps, dict) else None
        resolve = _Resolver(data)
        schemes = {
            str(n): scheme_doc(str(n), resolve(s))
            for n, s in (raw_schemes.items() if isinstance(raw_schemes, dict) else ())
            if isinstance(resolve(s), dict)
        }
        services.append(
            ServiceDoc(
                svc.name,
                str((info or {}).get("title", svc.name)),
                str((info or {}).get("version", "")),
                schemes,
                svc.upstream.timeouts.read,
                svc.upstream.timeouts.total,
            )
        )
    by_name = {s.name: s for s in services}
    operations: list[OperationDoc] = []
    for route in loaded.routes:
        svc_doc = by_name[route.service]
        doc = docs.get(route.service)
        data = doc.data if doc is not None else {}
        op = route.operation
        options = _auth_options(op, data) if op is not None and not route.public else []
        first = svc_doc.schemes.get(options[0].schemes[0]) if options else None
        query_key = None
        if first is not None and first.kind.startswith("API key in query"):
            query_key = (first.kind.rsplit(" ", 1)[-1], first.variables[0][0])
        curl = curl_example(base, route, op, data, first if query_key is None else None, query_key)
        if options and len(options[0].schemes) > 1:  # several schemes required together
            extra = [svc_doc.schemes[n] for n in options[0].schemes[1:] if n in svc_doc.schemes]
            curl = curl.replace("curl -sS", "curl -sS " + " ".join(a for s in extra for a in s.curl_args), 1)
        setup = first.setup if first is not None else ()
        if setup:
            curl = "\n".join(setup) + "\n" + curl
        methods = sorted(route.methods - {"HEAD"}) or ["HEAD"]
        operations.append(
            OperationDoc(
                method=", ".join(methods) if route.operation is None else methods[0],
                path=route.path + ("*" if route.prefix else ""),
                service=route.service,
                route_id=route.id,
                summary=str((op or {}).get("summary", "") or ""),
                description=str((op or {}).get("description", "") or ""),
                public=route.public,
                auth=options,
                documented_auth=bool(options) or route.public,
                max_body_bytes=route.max_body_bytes,
                curl=curl,
                gateway_auth=_gateway_auth(route),
            )
        )
    lim, to = cfg.listen.limits, cfg.listen.timeouts
    limits = {
        "Largest request body (default; per operation below)": human_size(lim.max_body_bytes),
        "Largest request head": human_size(lim.max_header_bytes),
        "Most header fields": str(lim.max_headers),
        "Longest URL": human_size(lim.max_url_bytes),
        "Time to send the request head": f"{to.header:g} s",
        "Longest pause while sending a body": f"{to.body:g} s",
        "Idle keep-alive connection closed after": f"{to.idle:g} s",
    }
    for s in services:
        limits[f"{s.name}: longest wait for the API's answer (504 after)"] = f"{s.read_timeout:g} s"
        limits[f"{s.name}: whole exchange with the API at most"] = f"{s.total_timeout:g} s"
    example = json.dumps(
        {
            "type": "about:blank",
            "title": "Not Found",
            "status": 404,
            "detail": "No route matches this path.",
            "request_id": "01J0EXAMPLE5Q4R7N2K8D3F6G9",
        },
        indent=2,
    )
    notes: list[str] = []
    unavailable = sum(op.gateway_auth == "unavailable" for op in operations)
    if unavailable:
        notes.append(
            f"{unavailable} operation(s) require authentication this gateway cannot verify yet: every request to "
            "them is answered 401 until the API's operators configure it (marked below)."
        )
    if not base.startswith("https://"):
        notes.append("This gateway address is plain HTTP: use it only for local testing, never with real credentials.")
    return Site(
        title=" / ".join(s.title for s in services) or "API",
        base_url=base,
        tls=cfg.listen.tls is not None,
        services=services,
        operations=operations,
        limits=limits,
        errors=list(ERRORS),
        rejects=list(REJECTS),
        key_guidance=list(KEY_GUIDANCE),
        problem_example=example,
        notes=notes,
    )
