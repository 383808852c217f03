"""Settings of the ``auth`` stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bastion.headernames import is_token
from bastion.pipeline.stage import StageConfig
from bastion.stages.auth.jwt.config import IntrospectionSettings, JwtSettings

#: Why a route that requires authentication cannot simply have it switched off.
EXPLICIT_WAYS = (
    "mark the route `public: true` (`security: []` in OpenAPI) if it needs no authentication, "
    "or set `delegate: upstream` if its backend authenticates every request itself"
)


class ApiKeysConfig(BaseModel):
    """``policies.auth.api_keys``: Bastion's own API keys (``bst_...``, made by ``bastion keys``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        True,
        description=(
            "Accept Bastion's API keys wherever a route's security scheme can carry one: an `apiKey` scheme's "
            "header, cookie (or query parameter, see `query`), and `Authorization: Bearer bst_...` on any scheme "
            "that takes a bearer token."
        ),
    )
    query: bool = Field(
        False,
        description=(
            "Also read a key from the query parameter an `apiKey` scheme with `in: query` names. Off by default: "
            "URLs end up in logs, histories and Referer headers. While off, that parameter is ignored (a key "
            "there proves nothing) and `bastion check` says so."
        ),
    )


class LockoutConfig(BaseModel):
    """``policies.auth.lockout``: brute force protection for the credentials this route checks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        False,
        description=(
            "Count failed authentications per client IP and per credential id in the state backend, and lock "
            "out past the thresholds (429, reason `auth.locked`, with `Retry-After`). Off by default: Bastion's "
            "own credentials cannot be guessed (256-bit keys, signed tokens), and a lockout needs a state backend "
            "every worker shares (`backends.state: redis` with several workers). Turn it on where credentials "
            "can be guessed or each try costs (opaque tokens checked by introspection) and to slow scanners."
        ),
    )
    max_failures_per_ip: int = Field(
        10, ge=1, description="Failed authentications from one client IP within `window` that lock the IP out."
    )
    max_failures_per_credential: int = Field(
        20,
        ge=1,
        description=(
            "Failed authentications naming one credential id (an API key's public prefix) within `window` that "
            "lock that credential out: further failing tries with it get 429, while the right key, from any "
            "address not locked out, still gets through (a lockout is never a way to shut a consumer out)."
        ),
    )
    window: float = Field(300.0, gt=0, le=86400, description="Seconds over which failures are counted.")
    backoff: float = Field(
        60.0, gt=0, le=86400, description="Seconds of the first lockout; each new lockout doubles it."
    )
    max_backoff: float = Field(3600.0, gt=0, le=7 * 86400, description="The longest a lockout lasts.")

    @model_validator(mode="after")
    def _bounds(self) -> LockoutConfig:
        if self.max_backoff < self.backoff:
            raise ValueError("max_backoff must be at least backoff")
        return self


class AuthConfig(StageConfig):
    """``policies.auth`` / ``x-bastion-auth``: who may call a route that is not public.

    The route's OpenAPI security requirements say which credentials it takes; the settings
    here say how they are verified. A route whose schemes nothing here can verify is refused
    with 401, never forwarded, unless its backend is declared to authenticate requests itself.
    """

    enabled: bool = Field(
        True,
        description=(
            "Must stay true on a route that requires authentication (a load error otherwise): mark the "
            "route public (`public: true`, `security: []`) or set `delegate: upstream` instead."
        ),
    )
    enforce: bool = Field(
        True,
        description=(
            "False (shadow mode) is allowed only with `delegate: upstream`, where the backend still "
            "authenticates: forwarding what nothing authenticated is never a setting."
        ),
    )
    delegate: Literal["upstream"] | None = Field(
        None,
        description=(
            "`upstream`: the backend authenticates every request itself, so the gateway forwards "
            "requests without checking credentials (shown by `bastion check`, the access log and "
            "`bastion audit`). Unset: the gateway checks the credentials itself, and a route whose "
            "security schemes nothing configured can verify answers 401."
        ),
    )
    api_keys: ApiKeysConfig = Field(
        default_factory=ApiKeysConfig, description="Bastion's own API keys (on by default)."
    )
    jwt: JwtSettings | None = Field(None, description="JWTs of external identity providers (docs/jwt.md).")
    introspection: IntrospectionSettings | None = Field(
        None, description="Opaque tokens of an external authorization server, checked by RFC 7662 introspection."
    )
    phantom_tokens: bool = Field(
        False,
        description=(
            "Accept phantom tokens (`Authorization: Bearer bpt_...`, issued where `policies.phantom.issue` is "
            "set) and forward the upstream token each stands for in its place. No other bearer token is then "
            "accepted on the route (no JWT, introspected or built-in OAuth server token; Bastion's API keys "
            "still are): the upstream's own tokens, and any forged with its signing key, are refused with 401."
        ),
    )
    phantom_cookie: str | None = Field(
        None,
        description=(
            "With `phantom_tokens`: the cookie that also carries phantom tokens (the login's `issue.cookie`). Its "
            "`bpt_...` value is verified like a bearer phantom and replaced by the upstream's token in the "
            "forwarded `Cookie` header; any other value (the upstream's own token) is refused with 401. Where an "
            "OpenAPI `apiKey` scheme names this cookie, that scheme takes phantom tokens; otherwise every "
            "alternative that takes a bearer token is also met by the cookie, with the same scopes required."
        ),
    )
    phantom_logout: bool = Field(
        False,
        description=(
            "With `phantom_tokens`: this operation ends a session (a logout). The phantom token it is called "
            "with is deleted from the state backend before the request is forwarded (with the upstream's "
            "token, so the upstream can end its own session), so it stops working at once on every worker "
            "and instance."
        ),
    )
    lockout: LockoutConfig = Field(
        default_factory=LockoutConfig, description="Brute force protection (off by default, see `enabled`)."
    )

    @model_validator(mode="after")
    def _phantom_settings(self) -> AuthConfig:
        if not self.phantom_tokens:
            for name, value in (("phantom_cookie", self.phantom_cookie), ("phantom_logout", self.phantom_logout)):
                if value:
                    raise ValueError(f"{name} needs phantom_tokens: true (the route must accept phantom tokens)")
        if self.phantom_cookie is not None and not _cookie_name(self.phantom_cookie):
            raise ValueError(f"phantom_cookie {self.phantom_cookie!r} is not a cookie name (RFC 6265 token)")
        return self


def _cookie_name(name: str) -> bool:
    """Whether ``name`` is an RFC 6265 cookie name (an HTTP token)."""
    return is_token(name)


def route_check(config: AuthConfig, public: bool) -> tuple[str, str] | None:
    """Settings a route that requires authentication must not have: ``(field, message)``.

    Each would forward requests nobody authenticated, which is exactly the hole deny by
    default closes; the explicit ways are named in the message.
    """
    if public:
        return None
    if not config.enabled:
        return "enabled", f"authentication cannot be turned off on a route that requires it; {EXPLICIT_WAYS}"
    if not config.enforce and config.delegate is None:
        return "enforce", (
            "shadow mode (enforce: false) would forward requests that nothing authenticates; "
            f"{EXPLICIT_WAYS} (shadow mode is allowed with it)"
        )
    if config.failure_mode == "open" and config.delegate is None:
        return "failure_mode", (
            "failure_mode: open would forward requests whose credentials could not be checked (a key store or "
            f"JWKS endpoint down) as if they were authenticated; {EXPLICIT_WAYS}"
        )
    return None
