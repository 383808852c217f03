"""The ``auth`` stage: what a route that is not public gets, decided once at load.

No authentication method exists yet, so the decision needs nothing from the request: a
route that requires authentication is refused with 401 (its ``WWW-Authenticate`` challenges
derived from the security schemes the route declares), unless its backend is declared to
authenticate requests itself (``delegate: upstream``). The proxy applies the refusal as soon
as the request head is complete (``RouteRuntime.auth_refusal``): the client uploads nothing,
no other stage runs and the upstream sees nothing. The stage is therefore not a request hook.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bastion.pipeline.stage import RouteInfo, Stage
from bastion.stages.auth.config import AuthConfig
from bastion.types import Block

REASON_UNCONFIGURED = "auth.unconfigured"
DETAIL_UNCONFIGURED = (
    "This operation requires authentication, which this gateway cannot verify yet: "
    "its requests are refused until an authentication method is configured."
)
#: Characters of an HTTP token (RFC 9110 5.6.2): what may appear unquoted, or be quoted safely.
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_HTTP_SCHEMES = {"bearer": "Bearer", "basic": "Basic", "digest": "Digest", "negotiate": "Negotiate"}

#: One way to authenticate: all these schemes together (an OpenAPI security requirement).
Requirement = tuple[str, ...]


def _token(text: str) -> bool:
    return bool(text) and all(c in _TOKEN_CHARS for c in text)


def requirements_of(route: RouteInfo) -> tuple[Requirement, ...]:
    """The route's security requirements (alternatives), from its OpenAPI operation or the
    document's global ``security``; empty for a hand-written route (no scheme declared)."""
    op = route.operation
    if op is None:
        return ()
    doc = route.openapi or {}
    security = op.get("security", doc.get("security"))
    if not isinstance(security, list):
        return ()
    return tuple(tuple(str(name) for name in req) for req in security if isinstance(req, dict) and req)


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
        http = _HTTP_SCHEMES.get(name.lower(), name if _token(name) else "")
        return f"{http} {quoted_realm}" if http else None
    if kind == "apiKey":
        # No registered HTTP scheme for API keys; say where the key goes, as auth-params.
        where, pname = str(scheme.get("in", "")), str(scheme.get("name", ""))
        params = [quoted_realm]
        if where in ("header", "query", "cookie") and _token(pname):
            params += [f'in="{where}"', f'name="{pname}"']
        return "ApiKey " + ", ".join(params)
    return None  # mutualTLS: the certificate is asked for by TLS, not by a challenge


def challenges_of(route: RouteInfo, requirements: tuple[Requirement, ...]) -> tuple[str, ...]:
    """Every distinct challenge of the route's schemes; ``Bearer`` when none can be derived
    (RFC 9110 requires at least one challenge on a 401)."""
    realm = route.service  # service names are tokens: safe inside a quoted string
    doc = route.openapi or {}
    schemes = _schemes(route.openapi)
    out: list[str] = []
    for requirement in requirements:
        for name in requirement:
            found = challenge(_resolve(doc, schemes.get(name)), realm)
            if found is not None and found not in out:
                out.append(found)
    return tuple(out) or (f'Bearer realm="{realm}"',)


def describe(requirements: tuple[Requirement, ...]) -> str:
    """``apiKey or bearerAuth``; ``apiKey + signature`` for schemes required together."""
    if not requirements:
        return "authentication"
    return " or ".join(" + ".join(req) for req in requirements)


class AuthStage(Stage):
    """Authentication of a route that is not public (public routes get no auth stage)."""

    def __init__(self, config: AuthConfig, route: RouteInfo) -> None:
        super().__init__("auth", config)
        self.requirements = requirements_of(route)
        #: The backend authenticates requests itself; the gateway forwards them unchecked.
        self.delegated = config.delegate == "upstream"
        #: The 401 every request gets, when nothing can verify the route's credentials.
        self.refusal: Block | None = None
        if not self.delegated:
            self.refusal = Block(
                401,
                "Unauthorized",
                DETAIL_UNCONFIGURED,
                REASON_UNCONFIGURED,
                tuple(("www-authenticate", c) for c in challenges_of(route, self.requirements)),
            )

    @classmethod
    def from_config(cls, config: AuthConfig, route: RouteInfo) -> AuthStage | None:
        return None if route.public else cls(config, route)

    @property
    def summary(self) -> str:
        """What is really enforced on the route, for ``bastion check`` and the audit."""
        required = describe(self.requirements)
        if self.delegated:
            what = f"authentication ({required})" if self.requirements else "authentication"
            shadow = "; shadow mode, nothing to observe" if not self.config.enforce else ""
            return f"{what} delegated to upstream{shadow}"
        return f"401: requires {required}, which nothing here verifies"


def auth_stage(built: Sequence[Stage]) -> AuthStage | None:
    """The route's auth stage among its built stages (``None`` on a public route)."""
    for stage in built:
        if isinstance(stage, AuthStage):
            return stage
    return None
