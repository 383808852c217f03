"""Settings of the ``auth`` stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion.pipeline.stage import StageConfig

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
    # ``jwt`` (tokens of external identity providers, stages/auth/jwt/) sits here, beside the
    # other methods; compile_verifiers (dispatch.py) builds its verifier.


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
