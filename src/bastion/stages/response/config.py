"""Settings of the ``response`` stage (``policies.response`` / ``x-bastion-response``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bastion.headernames import checked_fields
from bastion.pipeline.stage import StageConfig

#: Property names that never leave, whatever a schema says (matched case-insensitively).
DEFAULT_NEVER_RETURN: list[str] = [
    "password",
    "password_hash",
    "passwordHash",
    "passwd",
    "secret",
    "client_secret",
    "private_key",
    "totp_secret",
]


class UniformFailures(BaseModel):
    """``uniform_failures``: one answer for every failure of a login-like operation.

    On login, registration and password-reset operations, so that an account's existence
    does not show in the answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: int = Field(400, ge=200, le=499, description="The status of the one failure answer.")
    body: Any = Field(
        default_factory=lambda: {"error": "The request could not be completed."},
        description="The JSON body of the one failure answer (any JSON value).",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Headers of the failure answer, beside `content-type: application/json` (which it may replace).",
    )
    match_body: list[str] = Field(
        default_factory=list,
        description=(
            "Literal texts that make a 2xx answer a failure too (an API that says 200 "
            '`{"error": "unknown user"}`): a 2xx body containing any of them is replaced.'
        ),
    )
    min_latency: float = Field(
        0.0,
        ge=0,
        le=30,
        description=(
            "Seconds every answer of the operation (failure or not) takes at least, counted from the request "
            "head: a fast 'no such account' then looks like a slow password check. Must be below the "
            "stage's `timeout`."
        ),
    )

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_fields(value)

    @field_validator("match_body")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if any(not text for text in value):
            raise ValueError("an empty text would match every body")
        return value


class ResponseConfig(StageConfig):
    """``policies.response``: what of an upstream's response may reach the client."""

    schema_: Literal["filter", "block", "monitor", "off"] = Field(
        "filter",
        alias="schema",
        description=(
            "JSON responses of an operation whose response declares a schema: 'filter' removes the "
            "properties the schema does not declare (nested objects and arrays included), 'block' "
            "answers 502 problem+json instead, 'monitor' only records them, 'off' does neither."
        ),
    )
    undeclared_status: Literal["pass", "block", "monitor"] = Field(
        "monitor",
        description=(
            "A status the operation's `responses` does not declare (no exact code, `4XX` range or "
            "`default`): 'block' answers 502, 'monitor' records it, 'pass' lets it through."
        ),
    )
    never_return: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NEVER_RETURN),
        description=(
            "Removed from every JSON response, whatever its schema declares: property names, matched "
            "case-insensitively at any depth, or JSON pointers (`/data/token`, `*` for any member or item). "
            "Properties the schema marks `writeOnly` are removed too."
        ),
    )
    errors: Literal["mask", "pass"] = Field(
        "mask",
        description=(
            "'mask' replaces the body of an upstream 5xx (stack traces, SQL errors, debug pages) with "
            "problem+json carrying the request ID; the original, truncated to `error_body_kept` bytes, "
            "goes only to the exchange's record."
        ),
    )
    error_body_kept: int = Field(
        512, ge=0, le=8192, description="Bytes of a masked error body kept in the record (0: none)."
    )
    uniform_failures: UniformFailures | None = Field(
        None,
        description=(
            "Set on login, registration and password-reset operations: every failure (4xx, or a 2xx "
            "matching `match_body`) is replaced by one configured answer, and answers are padded to "
            "`min_latency`."
        ),
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("never_return")
    @classmethod
    def _check_names(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not entry or entry == "/":
                raise ValueError("an entry must be a property name or a JSON pointer below the root ('/a/b')")
        return value

    @model_validator(mode="after")
    def _pad_within_timeout(self) -> ResponseConfig:
        uniform = self.uniform_failures
        if uniform is not None and uniform.min_latency >= self.timeout:
            raise ValueError(
                f"uniform_failures.min_latency ({uniform.min_latency:g} s) must be below the stage's timeout "
                f"({self.timeout:g} s): a padded answer would otherwise count as a failed stage"
            )
        return self
