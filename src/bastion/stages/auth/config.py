"""Settings of the ``auth`` stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bastion.pipeline.stage import StageConfig
from bastion.stages.auth.jwt.config import IntrospectionSettings, JwtSettings

#: Why a route that requires authentication cannot simply have it switched off.
EXPLICIT_WAYS = (
    "mark the route `public: true` (`security: []` in OpenAPI) if it needs no authentication, "
    "or set `delegate: upstream` if its backend authenticates every request itself"
)


class AuthConfig(StageConfig):
    """``policies.auth`` / ``x-bastion-auth``: who may call a route that is not public.

    Bastion cannot verify credentials yet (API keys, JWT, OAuth and mTLS come as methods of
    this stage), so a route that requires authentication is refused with 401, never
    forwarded, unless its backend is declared to authenticate requests itself.
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
            "`bastion audit`). Unset: a route that requires authentication answers 401 until an "
            "authentication method is configured."
        ),
    )
    jwt: JwtSettings | None = Field(None, description="JWTs of external identity providers (docs/jwt.md).")
    introspection: IntrospectionSettings | None = Field(
        None, description="Opaque tokens of an external authorization server, checked by RFC 7662 introspection."
    )


def route_check(config: AuthConfig, public: bool) -> tuple[str, str] | None:
    """Settings a route that requires authentication must not have: ``(field, message)``.

    Both would forward requests nobody authenticated, which is exactly the hole deny by
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
    return None
