"""Settings of the ``phantom`` stage (``policies.phantom`` / ``x-bastion-phantom``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bastion.pipeline.stage import StageConfig


class IssueSettings(BaseModel):
    """``policies.phantom.issue``: on this (login) operation, replace the upstream's token."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token_field: str = Field(
        "access_token",
        min_length=1,
        description=(
            "The member of the upstream's JSON response object that holds its token; dots name nested "
            "members (`data.token`). A successful (2xx) response without it passes unchanged."
        ),
    )
    cookie: str | None = Field(
        None,
        description=(
            "The cookie the upstream sets its token in (`Set-Cookie: NAME=...`), on any answer of the login: "
            "its value is replaced by a phantom token, its attributes kept, with `HttpOnly` added and, when the "
            "client came over TLS, `Secure`. Routes take it back with `policies.auth.phantom_cookie`. Unset: "
            "only `token_field` is replaced."
        ),
    )
    ttl: float = Field(
        3600.0,
        gt=0,
        le=30 * 86400,
        description=(
            "Seconds a phantom token lives when the upstream's token is not a JWT with an `exp` claim "
            "(a JWT's phantom expires with it)."
        ),
    )
    consumer_claim: str = Field(
        "sub", min_length=1, description="The claim of the upstream's JWT that names the consumer."
    )
    roles_claim: str = Field("roles", min_length=1, description="The claim that lists the consumer's roles.")

    @field_validator("cookie")
    @classmethod
    def _cookie_name(cls, value: str | None) -> str | None:
        if value is not None and not (value and all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~")
                                                    for c in value)):
            raise ValueError(f"{value!r} is not a cookie name (RFC 6265 token)")
        return value


class PhantomConfig(StageConfig):
    """``policies.phantom``: phantom tokens, issued on a login operation.

    Routes that accept them say so with ``policies.auth.phantom_tokens: true``.
    """

    issue: IssueSettings | None = Field(
        None,
        description=(
            "Set on the login operation: its successful JSON response's token (`token_field`) is replaced by a "
            "phantom token (`bpt_...`, 256 random bits) and kept, hashed, in the state backend. Unset: the stage "
            "does nothing on the route."
        ),
    )

    @model_validator(mode="after")
    def _closed(self) -> PhantomConfig:
        # Failing open would hand the client the upstream's own token: what this stage prevents.
        if self.failure_mode == "open":
            raise ValueError(
                "failure_mode must be 'closed': when the state backend cannot keep a phantom token, the login "
                "is answered 503 rather than given the upstream's own token"
            )
        return self
