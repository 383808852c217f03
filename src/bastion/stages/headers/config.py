"""Settings of the ``headers`` stage."""

from __future__ import annotations

from pydantic import Field, field_validator

from bastion.headernames import checked_fields, is_token
from bastion.pipeline.stage import StageConfig

DEFAULT_SET: dict[str, str] = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "cross-origin-resource-policy": "same-origin",
}

#: Headers that name the backend's software, version or internals (a name ending in ``*``
#: is a prefix: ``x-debug-*`` is every debug header).
DEFAULT_REMOVE: list[str] = [
    "server",
    "x-powered-by",
    "x-aspnet-version",
    "x-aspnetmvc-version",
    "x-runtime",
    "x-debug-*",
    "x-generator",
    "x-backend-server",
    "x-sourcefiles",
]


class HeadersConfig(StageConfig):
    """``policies.headers``: response headers every client gets."""

    set: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_SET),
        description="Headers set on every response (an upstream value is replaced).",
    )
    add_if_missing: dict[str, str] = Field(
        default_factory=dict,
        description="Headers set only when the upstream did not send them (e.g. cache-control).",
    )
    remove: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REMOVE),
        description=(
            "Response headers removed because they reveal the backend's software or internals; a name "
            "ending in `*` is a prefix (`x-debug-*`)."
        ),
    )
    authenticated_cache_control: str | None = Field(
        "no-store",
        description=(
            "Cache-Control on every response to an authenticated request (a credential proved a consumer), "
            "replacing the upstream's: what one consumer gets must not be kept by a shared or browser cache. "
            "Override it per route (`private, max-age=60`); null leaves the upstream's."
        ),
    )

    @field_validator("set", "add_if_missing")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_fields(value)

    @field_validator("remove")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        for name in value:
            if not is_token(name.removesuffix("*")):
                raise ValueError(f"{name!r} is not a header name (or a prefix ending in '*')")
        return [v.lower() for v in value]

    @field_validator("authenticated_cache_control")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c in value for c in "\r\n\x00")):
            raise ValueError("must be a non-empty header value without CR, LF or NUL")
        return value
