"""Settings of the ``ratelimit`` stage: how many requests a client may make in a window."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from bastion.pipeline.stage import StageConfig

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
#: What a limit counts by: a fixed key, or a header or claim whose value is the key.
_BY = re.compile(
    r"^(consumer|credential|ip|route|global"
    r"|header:[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}|claim:[A-Za-z0-9_.:/-]{1,100})$"
)
#: A member of the request body: a JSON pointer (``/user/name``) or a dotted JSONPath
#: (``$.user.name``, ``$.users[0].name``). Names are kept to characters that need no
#: escaping anywhere, since the pointer also goes into a header's policy name.
_SEGMENT = r"[A-Za-z0-9_@-]{1,64}"
_POINTER = re.compile(rf"^(/{_SEGMENT}){{1,8}}$")
_JSONPATH = re.compile(rf"^\$(\.{_SEGMENT}|\[\d{{1,6}}\]){{1,8}}$")
_JSONPATH_PART = re.compile(rf"\.({_SEGMENT})|\[(\d+)\]")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: An RFC 6749 scope token: printable ASCII but space, quote and backslash.
_SCOPE = re.compile(r'^[\x21\x23-\x5b\x5d-\x7e]{1,128}$')
#: At most a year: a longer window is a quota's business (persisted, per plan), not a rate limit's.
_MAX_WINDOW = 366 * 86400.0
#: A sliding window keeps the time of each request it admitted: its limit stays small.
MAX_SLIDING_LIMIT = 10_000

#: How a limit counts: GCRA (a burst of ``limit``, then one per ``window / limit``; one number
#: per key) or a sliding window (never more than ``limit`` in any ``window``; one entry per
#: request admitted).
Algorithm = Literal["gcra", "sliding-window"]
_ALGORITHM_TEXT = (
    "`gcra` (default): a burst of up to `limit`, then one request every `window / limit`, one number per key, "
    "for any limit. `sliding-window`: never more than `limit` requests in any interval of `window`, one entry "
    f"per admitted request, so `limit` at most {MAX_SLIDING_LIMIT:,}: for small limits such as a login's."
)


def _seconds(value: object) -> object:
    """``10s``, ``500ms``, ``1m``, ``1h``, ``1d``, or a number of seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(
                f"{value!r} is not a duration: write a number of seconds, or one such as 500ms, 10s, 1m, 1h, 1d"
            )
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


#: A window: a positive duration of at most a year, in seconds once parsed.
Window = Annotated[float, BeforeValidator(_seconds), Field(gt=0, le=_MAX_WINDOW)]


def seconds_text(window: float) -> str:
    """``86400.0`` -> ``86400``, ``2592000.0`` -> ``2592000`` (never ``2.592e+06``), ``0.5`` -> ``0.5``."""
    return str(int(window)) if window.is_integer() else f"{window:g}"


def _check_by(value: str) -> str:
    if value.startswith("body:"):
        return "body:" + _body_pointer(value[5:])
    if not _BY.match(value):
        raise ValueError(
            f"{value!r} is not a rate limit key: expected consumer, credential, ip, route, global, "
            "header:NAME, claim:NAME or body:/POINTER"
        )
    return "header:" + value[7:].lower() if value.startswith("header:") else value


def _body_pointer(where: str) -> str:
    """``/user/name`` as it is, ``$.user.name`` as ``/user/name``: one form for keys and names."""
    if _POINTER.match(where):
        return where
    if _JSONPATH.match(where):
        return "".join("/" + (name or index) for name, index in _JSONPATH_PART.findall(where))
    raise ValueError(
        f"{where!r} is not a body member: write a JSON pointer such as /username or /user/name, or a "
        "JSONPath such as $.username or $.users[0].name (letters, digits, '_', '@' or '-' in names; "
        "at most 8 steps)"
    )


def _check_name(value: str | None) -> str | None:
    if value is not None and not _NAME.match(value):
        raise ValueError(f"{value!r} is not a policy name: 1 to 64 letters, digits, '_', '.' or '-'")
    return value


class LimitRule(BaseModel):
    """One limit: ``limit`` requests per ``window``, counted separately for each value of ``by``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(gt=0, le=1_000_000_000, description="Requests allowed per window (also the largest burst).")
    window: Window = Field(description="The window, such as `10s`, `1m`, `1h`, `1d` (or a number of seconds).")
    by: str = Field(
        "consumer",
        description=(
            "What is counted separately: `consumer`, `credential`, `ip`, `route`, `global`, `header:NAME`, "
            "`claim:NAME` or `body:/POINTER` (also `body:$.name`: a member of the JSON or form body, such as "
            "the account a login names; checked once the body is read). A request without a consumer, "
            "credential, header, claim or body member is counted by client IP."
        ),
    )
    name: str | None = Field(
        None,
        description="The policy's name in the `RateLimit` headers (default: `<by>-<limit>-per-<window>`).",
    )
    algorithm: Algorithm = Field("gcra", description=_ALGORITHM_TEXT)

    @field_validator("by")
    @classmethod
    def _by(cls, value: str) -> str:
        return _check_by(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return _check_name(value)

    @model_validator(mode="after")
    def _sliding_is_small(self) -> LimitRule:
        _check_sliding(self.algorithm, self.limit)
        return self

    @property
    def policy_name(self) -> str:
        if self.name is not None:
            return self.name
        key = self.by.replace(":/", "-").replace(":", "-").replace("/", "-")
        return f"{key}-{self.limit}-per-{seconds_text(self.window)}s"


def _check_sliding(algorithm: str, limit: int | None) -> None:
    if algorithm == "sliding-window" and limit is not None and limit > MAX_SLIDING_LIMIT:
        raise ValueError(
            f"a sliding window keeps the time of every request it admits: its limit is at most "
            f"{MAX_SLIDING_LIMIT:,} (got {limit:,}); use algorithm: gcra for larger limits"
        )


class PlanLimits(BaseModel):
    """What one plan (``plans.<name>``) allows each consumer on it, over every route."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quotas: list[LimitRule] = Field(
        default_factory=list,
        description=(
            "Long windows, per consumer: `{limit: 1000, window: 1d}`, `{limit: 20000, window: 30d}`. Rolling "
            "(GCRA), kept in the state backend."
        ),
    )
    rate_limits: list[LimitRule] = Field(
        default_factory=list, description="Short windows, per consumer: `{limit: 10, window: 1s}`."
    )
    scopes: list[str] = Field(
        default_factory=list,
        description=(
            "Scopes the developers of consumers on this plan may give the keys they create in the developer "
            "portal (none listed: portal keys carry no scope). Not a limit on keys an operator creates."
        ),
    )

    def rules_of(self, plan: str) -> list[LimitRule]:
        """The plan's rate limits then quotas, named after the plan unless they have a name."""
        out: list[LimitRule] = []
        for kind, rules in (("rate", self.rate_limits), ("quota", self.quotas)):
            for rule in rules:
                name = rule.name or f"{plan}-{kind}-{rule.limit}-per-{seconds_text(rule.window)}s"
                out.append(rule.model_copy(update={"name": name}))
        return out

    @field_validator("scopes")
    @classmethod
    def _scope_tokens(cls, value: list[str]) -> list[str]:
        for scope in value:
            if not _SCOPE.match(scope):
                raise ValueError(f"{scope!r} is not a scope: printable ASCII without space, quote or backslash")
        return sorted(set(value))

    @field_validator("quotas", "rate_limits")
    @classmethod
    def _per_consumer(cls, value: list[LimitRule]) -> list[LimitRule]:
        for rule in value:
            if rule.by != "consumer":
                raise ValueError(f"a plan's limits count per consumer: leave `by` out (got {rule.by!r})")
            if rule.algorithm != "gcra":
                raise ValueError("a plan's limits are rolling GCRA quotas: leave `algorithm` out")
        return value


def _check_plans(value: dict[str, PlanLimits]) -> dict[str, PlanLimits]:
    for name in value:
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not a plan name: 1 to 64 letters, digits, '_', '.' or '-'")
    return value


class RateLimitConfig(StageConfig):
    """``policies.ratelimit`` / ``x-bastion-rate-limit``: exact rate limits, shared by every
    worker and instance.

    One limit inline (``{limit: 20, window: 10s, by: consumer}``), several under ``limits``
    (a request must be within all of them, and counts against all of them only when it is),
    or several as a bare list in place of the settings (``[{limit: 10, window: 1s}, ...]``,
    which is ``limits`` with every other setting left to its default or a broader layer).
    """

    limit: int | None = Field(
        None, gt=0, le=1_000_000_000, description="Requests allowed per `window` (one limit inline)."
    )
    window: Window | None = Field(None, description="The inline limit's window, such as `10s`, `1m`, `1h`, `1d`.")
    by: str = Field("consumer", description="What the inline limit counts separately (see `limits[].by`).")
    name: str | None = Field(None, description="The inline limit's name in the `RateLimit` headers.")
    algorithm: Algorithm = Field("gcra", description="How the inline limit counts (see `limits[].algorithm`).")
    limits: list[LimitRule] = Field(
        default_factory=list,
        description=(
            "Several limits, each `{limit, window, by, name, algorithm}`; a request must be within all of them."
        ),
    )
    plans: dict[str, PlanLimits] = Field(
        default_factory=dict,
        description=(
            "The top-level `plans` of bastion.yaml (set there, not here): each signed-in consumer whose `plan` "
            "names one is also held to its quotas and rate limits, counted per consumer over every route."
        ),
    )
    instances: int = Field(
        1,
        ge=1,
        le=10_000,
        description=(
            "How many Bastion instances share these limits. With `failure_mode: open`, while the state backend "
            "does not answer, each worker limits locally to `limit // (workers * instances)` (at least 1) of "
            "each limit, so that all of them together admit no more than the limit."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _inline_pair(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("limit" in data) != ("window" in data):
            raise ValueError("an inline rate limit needs both `limit` and `window` (or use `limits: [...]`)")
        return data

    @field_validator("by")
    @classmethod
    def _by(cls, value: str) -> str:
        return _check_by(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return _check_name(value)

    @field_validator("plans")
    @classmethod
    def _plans(cls, value: dict[str, PlanLimits]) -> dict[str, PlanLimits]:
        return _check_plans(value)

    @model_validator(mode="after")
    def _inline_sliding_is_small(self) -> RateLimitConfig:
        _check_sliding(self.algorithm, self.limit)
        return self

    @model_validator(mode="after")
    def _distinct_names(self) -> RateLimitConfig:
        names = [rule.policy_name for rule in self.rules()]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"two limits share the name {repeated[0]!r}: give each a distinct `name`")
        return self

    def rules(self) -> list[LimitRule]:
        """Every limit of the route: the inline one first, then ``limits``."""
        inline: list[LimitRule] = []
        if self.limit is not None and self.window is not None:
            inline.append(
                LimitRule(limit=self.limit, window=self.window, by=self.by, name=self.name, algorithm=self.algorithm)
            )
        return inline + list(self.limits)
