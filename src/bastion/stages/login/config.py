"""Settings of the ``login`` stage (``policies.login`` / ``x-bastion-login``)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from bastion.pipeline.stage import StageConfig

#: Where a login request may name its account, and how ``account`` spells each.
ACCOUNT_PLACES = ("body", "query", "header")


def parse_account(text: str) -> tuple[str, tuple[str, ...]]:
    """``body:/user/name`` -> ``("body", ("user", "name"))`` (an RFC 6901 JSON pointer);
    ``query:user`` -> ``("query", ("user",))``; ``header:X-User`` -> ``("header", ("x-user",))``.

    Raises ``ValueError`` with a message naming what is wrong.
    """
    place, sep, where = text.partition(":")
    if not sep or place not in ACCOUNT_PLACES:
        raise ValueError(
            f"{text!r} does not say where the account is: write body:/JSON-pointer (a JSON body, or a form "
            "field when the pointer has one part), query:NAME or header:NAME"
        )
    if place == "body":
        if not where.startswith("/") or where == "/":
            raise ValueError(f"{text!r}: after body: comes a JSON pointer such as /username (RFC 6901)")
        parts = tuple(p.replace("~1", "/").replace("~0", "~") for p in where[1:].split("/"))
        if any(not p for p in parts):
            raise ValueError(f"{text!r}: the JSON pointer has an empty part")
        return place, parts
    if not where or any(c in where for c in " \t\r\n:"):
        raise ValueError(f"{text!r}: after {place}: comes the name of a {place} parameter")
    return place, ((where.lower(),) if place == "header" else (where,))


class LoginConfig(StageConfig):
    """``policies.login``: marks a login operation, whose failures are counted per account.

    Set on the operation that checks a password (or a one-time code): failed logins of one
    account, from any address, lock that account out for a while, however many addresses
    the guesses come from. Credentials the gateway verifies itself have their own lockout
    (``policies.auth.lockout``).
    """

    account: str | None = Field(
        None,
        description=(
            "Where the login request names its account: `body:/username` (an RFC 6901 JSON pointer into a JSON "
            "body; with a one-part pointer, also the field of an `application/x-www-form-urlencoded` body), "
            "`query:NAME` or `header:NAME`. A login whose account cannot be read there (absent, repeated, not "
            "text, another body type) is refused with 400, so it cannot be tried past the count. Accounts are "
            "compared trimmed and case-folded (`Alice` and `alice ` are one account). Unset: the stage does "
            "nothing on the route."
        ),
    )
    failure_statuses: list[int] = Field(
        default_factory=lambda: [401, 403],
        min_length=1,
        description=(
            "The upstream's answers that mean the login failed. A 2xx answer resets the account's count and "
            "back-off; any other answer (an error, a malformed request) is neither, and is not counted. A try "
            "the upstream never answers (the gateway's own 502 or 504) stays counted."
        ),
    )
    max_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description=(
            "Logins of one account that may fail within `window`: the next try, from any address, is answered "
            "429 with `Retry-After` (reason `auth.account_locked`) without reaching the upstream. Tries in "
            "flight count as they are made, so concurrent guesses across workers and instances cannot overshoot."
        ),
    )
    window: float = Field(900.0, gt=0, le=86400, description="Seconds over which failures are counted.")
    backoff: float = Field(
        60.0, gt=0, le=86400, description="Seconds of the account's first lockout; each new lockout doubles it."
    )
    max_backoff: float = Field(3600.0, gt=0, le=7 * 86400, description="The longest an account lockout lasts.")

    @field_validator("account")
    @classmethod
    def _account(cls, value: str | None) -> str | None:
        if value is not None:
            parse_account(value)
        return value

    @field_validator("failure_statuses")
    @classmethod
    def _statuses(cls, value: list[int]) -> list[int]:
        for status in value:
            if not 400 <= status <= 599:
                raise ValueError(f"{status} is not an error status (400-599): a login that failed is refused")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> LoginConfig:
        if self.max_backoff < self.backoff:
            raise ValueError("max_backoff must be at least backoff")
        return self
