"""A route's OpenAPI security requirements, read once at load: the alternatives (schemes
required together, with their scopes), the scheme objects they name, the
``WWW-Authenticate`` challenges HTTP has for them, and where each scheme's credential is
on a route with the verifiers its settings name (:func:`compile_source`). The ``auth``
stage (``stage.py``) builds its per-route decisions from these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bastion.headernames import is_token
from bastion.pipeline.stage import RouteInfo
from bastion.stages.auth.config import AuthConfig
from bastion.stages.auth.credentials import ANY_BEARER, KEY_BEARER, NO_BEARER, SchemeSource
from bastion.stages.auth.dispatch import Verifiers

_HTTP_SCHEMES = {"bearer": "Bearer", "basic": "Basic", "digest": "Digest", "negotiate": "Negotiate"}

#: One way to authenticate: all these schemes together (an OpenAPI security requirement).
Requirement = tuple[str, ...]
#: A requirement with the scopes each of its schemes lists.
ScopedRequirement = tuple[tuple[str, tuple[str, ...]], ...]
#: The scheme a route with no security requirement declared (a hand-written route) takes.
IMPLICIT_BEARER = "bearer"
#: The alternative ``phantom_cookie`` adds where no declared scheme reads that cookie.
PHANTOM_COOKIE_SCHEME = "phantom cookie"


def security_of(route: RouteInfo) -> tuple[ScopedRequirement, ...]:
    """The route's security requirements (alternatives) with their scopes, from its OpenAPI
    operation or the document's global ``security``; empty for a hand-written route."""
    op = route.operation
    if op is None:
        return ()
    doc = route.openapi or {}
    security = op.get("security", doc.get("security"))
    if not isinstance(security, list):
        return ()
    out: list[ScopedRequirement] = []
    for req in security:
        if isinstance(req, dict) and req:
            out.append(
                tuple(
                    (str(name), tuple(str(s) for s in scopes) if isinstance(scopes, list) else ())
                    for name, scopes in req.items()
                )
            )
    return tuple(out)


def requirements_of(route: RouteInfo) -> tuple[Requirement, ...]:
    """The route's security requirements (alternatives), scheme names only."""
    return tuple(tuple(name for name, _ in req) for req in security_of(route))


def _schemes(doc: dict[str, Any] | None) -> dict[str, Any]:
    components = doc.get("components") if isinstance(doc, dict) else None
    schemes = components.get("securitySchemes") if isinstance(components, dict) else None
    return schemes if isinstance(schemes, dict) else {}


def _resolve(doc: dict[str, Any], node: Any) -> Any:
    """Follow a local ``$ref`` (one scheme pointing at another), at most a few hops."""
    for _ in range(8):
        if not (isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/")):
            return node
        target: Any = doc
        for part in node["$ref"][2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        node = target
    return None


def scheme_of(route: RouteInfo, name: str, config: AuthConfig | None = None) -> Any:
    """The security scheme object ``name`` stands for on ``route`` (``None`` if undeclared)."""
    if name == IMPLICIT_BEARER and route.operation is None:
        return {"type": "http", "scheme": "bearer"}
    if name == PHANTOM_COOKIE_SCHEME and config is not None and config.phantom_cookie:
        return {"type": "apiKey", "in": "cookie", "name": config.phantom_cookie}
    return _resolve(route.openapi or {}, _schemes(route.openapi).get(name))


def challenge(scheme: Any, realm: str) -> str | None:
    """The ``WWW-Authenticate`` challenge for an OpenAPI security scheme object, if HTTP has one.

    Only token characters from the document reach the header (no quoting or CR/LF tricks).
    """
    if not isinstance(scheme, dict):
        return None
    kind = scheme.get("type")
    quoted_realm = f'realm="{realm}"'
    if kind in ("oauth2", "openIdConnect"):
        return f"Bearer {quoted_realm}"  # RFC 6750: OAuth 2 access tokens are bearer tokens
    if kind == "http":
        name = str(scheme.get("scheme", ""))
        http = _HTTP_SCHEMES.get(name.lower(), name if is_token(name) else "")
        return f"{http} {quoted_realm}" if http else None
    if kind == "apiKey":
        # No registered HTTP scheme for API keys; say where the key goes, as auth-params.
        where, pname = str(scheme.get("in", "")), str(scheme.get("name", ""))
        params = [quoted_realm]
        if where in ("header", "query", "cookie") and is_token(pname):
            params += [f'in="{where}"', f'name="{pname}"']
        return "ApiKey " + ", ".join(params)
    return None  # mutualTLS: the certificate is asked for by TLS, not by a challenge


def challenges_of(route: RouteInfo, requirements: Sequence[Requirement]) -> tuple[str, ...]:
    """Every distinct challenge of the route's schemes; ``Bearer`` when none can be derived
    (RFC 9110 requires at least one challenge on a 401)."""
    realm = route.service  # service names are tokens: safe inside a quoted string
    out: list[str] = []
    for requirement in requirements:
        for name in requirement:
            found = challenge(scheme_of(route, name), realm)
            if found is not None and found not in out:
                out.append(found)
    return tuple(out) or (f'Bearer realm="{realm}"',)


def describe(requirements: Sequence[Requirement]) -> str:
    """``apiKey or bearerAuth``; ``apiKey + signature`` for schemes required together."""
    if not requirements:
        return "authentication"
    return " or ".join(" + ".join(req) for req in requirements)


def compile_source(name: str, scheme: Any, config: AuthConfig, verifiers: Verifiers) -> tuple[SchemeSource, str] | None:
    """Where scheme ``name``'s credential is on a route with ``verifiers``, and how
    ``bastion check`` says it; ``None`` when nothing here can verify that scheme."""
    if not isinstance(scheme, dict):
        return None
    kind = scheme.get("type")
    if kind == "apiKey":
        where, pname = str(scheme.get("in", "")), str(scheme.get("name", ""))
        if where == "cookie" and pname and pname == config.phantom_cookie and verifiers.phantom is not None:
            return SchemeSource(name, cookie=pname, phantom=True), f"phantom token (cookie {pname})"
        if verifiers.api_key is None:
            return None
        if not pname:
            return SchemeSource(name, bearer=KEY_BEARER), "api key (Authorization: Bearer bst_...)"
        if where == "header":
            header = pname.lower()
            bearer = NO_BEARER if header == "authorization" else KEY_BEARER
            return SchemeSource(name, header=header, bearer=bearer), f"api key (header {pname})"
        if where == "cookie":
            return SchemeSource(name, cookie=pname, bearer=KEY_BEARER), f"api key (cookie {pname})"
        if where == "query":
            if config.api_keys.query:
                return SchemeSource(name, query=pname, bearer=KEY_BEARER), f"api key (query {pname})"
            return (
                SchemeSource(name, bearer=KEY_BEARER, ignored_query=pname),
                f"api key (Authorization: Bearer bst_...; the query parameter {pname} is ignored: "
                "api_keys.query is off)",
            )
        return SchemeSource(name, bearer=KEY_BEARER), "api key (Authorization: Bearer bst_...)"
    bearer = kind in ("oauth2", "openIdConnect") or (
        kind == "http" and str(scheme.get("scheme", "")).lower() == "bearer"
    )
    if bearer and verifiers.takes_bearer:
        kinds = verifiers.bearer_kinds()
        label = ", ".join(kinds[:-1]) + (" or " if len(kinds) > 1 else "") + kinds[-1]
        return SchemeSource(name, bearer=ANY_BEARER), f"bearer token ({label})"
    if kind == "mutualTLS" and verifiers.mtls is not None:
        return SchemeSource(name, certificate=True), "client certificate (mTLS)"
    return None  # basic, digest, undeclared schemes



def phantom_cookie_alternatives(
    config: AuthConfig, route: RouteInfo, requirements: Sequence[ScopedRequirement]
) -> tuple[ScopedRequirement, ...]:
    """The alternatives a ``phantom_cookie`` adds: each alternative that takes a bearer token,
    with the cookie in the bearer scheme's place and the same scopes (the cookie is one more
    place for the same phantom, never a way around a scope). None where a declared ``apiKey``
    scheme already reads that cookie (it then takes the phantom tokens itself)."""
    name = config.phantom_cookie
    if not name or not config.phantom_tokens:
        return ()
    bearer: set[str] = set()
    for requirement in requirements:
        for scheme_name, _ in requirement:
            scheme = scheme_of(route, scheme_name)
            if not isinstance(scheme, dict):
                continue
            if scheme.get("type") == "apiKey" and scheme.get("in") == "cookie" and scheme.get("name") == name:
                return ()
            kind = scheme.get("type")
            if kind in ("oauth2", "openIdConnect") or (
                kind == "http" and str(scheme.get("scheme", "")).lower() == "bearer"
            ):
                bearer.add(scheme_name)
    out: list[ScopedRequirement] = []
    for requirement in requirements:
        if any(scheme_name in bearer for scheme_name, _ in requirement):
            swapped = tuple(
                (PHANTOM_COOKIE_SCHEME if scheme_name in bearer else scheme_name, scopes)
                for scheme_name, scopes in requirement
            )
            if swapped not in out:
                out.append(swapped)
    return tuple(out)


__all__ = [
    "IMPLICIT_BEARER",
    "PHANTOM_COOKIE_SCHEME",
    "Requirement",
    "ScopedRequirement",
    "challenge",
    "challenges_of",
    "compile_source",
    "describe",
    "phantom_cookie_alternatives",
    "requirements_of",
    "scheme_of",
    "security_of",
]
