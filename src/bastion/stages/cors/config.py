"""Settings of the ``cors`` stage (``policies.cors`` / ``x-bastion-cors``)."""

from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator

from bastion.pipeline.stage import StageConfig
from bastion.stages.cors.origins import check_entry

#: Methods a preflight may name (as the configuration's routes may list them).
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def _token(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in name)


class CorsConfig(StageConfig):
    """``policies.cors``: which other origins' pages may call the route from a browser."""

    allow_origins: list[str] = Field(
        min_length=1,
        description=(
            "Origins whose pages may call the route: exact (`https://app.example.com`, "
            "`http://localhost:3000`), patterns (`https://*.example.com`: any subdomain, not "
            "example.com itself), or `*` (any origin, never with `allow_credentials`). `null` is refused."
        ),
    )
    allow_methods: list[str] = Field(
        default_factory=list,
        description="Methods a preflight may ask for; empty: the route's own methods.",
    )
    allow_headers: list[str] = Field(
        default_factory=lambda: ["authorization", "content-type"],
        description=(
            "Request headers a preflight may ask for (beyond the CORS-safelisted ones); `*` for any "
            "(not with `allow_credentials`)."
        ),
    )
    expose_headers: list[str] = Field(
        default_factory=list,
        description="Response headers a page may read beyond the safelisted ones (Access-Control-Expose-Headers).",
    )
    allow_credentials: bool = Field(
        False,
        description=(
            "Let pages send cookies and HTTP authentication (Access-Control-Allow-Credentials). "
            "Refused together with a `*` origin, header or method."
        ),
    )
    max_age: int = Field(600, ge=0, le=86400, description="Seconds a browser may cache a preflight's answer.")

    @field_validator("allow_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for entry in value:
            why = check_entry(entry)
            if why is not None:
                raise ValueError(why)
        return [v.lower() for v in value]

    @field_validator("allow_methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        out = [m.upper() for m in value]
        for method in out:
            if method != "*" and method not in HTTP_METHODS:
                raise ValueError(f"{method!r} is not an HTTP method Bastion routes ({', '.join(HTTP_METHODS)})")
        return out

    @field_validator("allow_headers", "expose_headers")
    @classmethod
    def _headers(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _token(name):
                raise ValueError(f"{name!r} is not a header name")
        return [v.lower() for v in value]

    @field_validator("allow_credentials")
    @classmethod
    def _no_wildcard_with_credentials(cls, value: bool, info: ValidationInfo) -> bool:
        # With credentials, browsers read '*' literally (or refuse it): a wildcard there is a
        # mistake, and reflecting any origin instead would hand every site the user's session.
        if value:
            for field in ("allow_origins", "allow_methods", "allow_headers", "expose_headers"):
                if "*" in (info.data.get(field) or ()):
                    raise ValueError(
                        f"'*' in {field} cannot be combined with allow_credentials: true (any site could "
                        "act with the user's cookies); list the origins, methods and headers instead"
                    )
        return value
