"""The ``ratelimit`` stage's hooks: one script call per request phase that has limits.

The head hook names each head-keyed limit's key (who is counted) and runs :data:`GCRA` once
for all of them: one Redis round trip at most, before any of the body is read, so a
refused client uploads nothing. Limits keyed on a body member (``by: body:/username``)
cannot be decided before the body is read: on a route that has them the stage is a
:class:`RateLimitBodyStage`, whose request hook runs :data:`GCRA` once more, for those. A
refusal is a 429 problem document with ``Retry-After``; every answer the limits let through
carries the IETF ``RateLimit`` and ``RateLimit-Policy`` fields
(draft-ietf-httpapi-ratelimit-headers), set by the response hook from what the request
hooks left in ``exchange.facts``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bastion.errors import DependencyUnavailable, PolicyError
from bastion.pipeline.stage import HeadStage, RequestOutcome, RequestStage, ResponseStage, RouteInfo
from bastion.stages.ratelimit.body import body_member, pointer_steps
from bastion.stages.ratelimit.config import LimitRule, PlanLimits, RateLimitConfig
from bastion.stages.ratelimit.fallback import SHARED_KEY, LocalFallback, local_share
from bastion.stages.ratelimit.gcra import GCRA, LIMITS, interval_us, window_us
from bastion.stages.ratelimit.plans import PlanBook, plan_book
from bastion.state.interface import PreparedScript, ScriptArg, ScriptResult, StateBackend
from bastion.types import Block, Exchange, header_get

if TYPE_CHECKING:
    from bastion.services import Services

#: A key value longer than this (a header's) is stored as its hash: keys stay small.
_MAX_VALUE = 128


class _Limit:
    """One limit compiled for a route: its key prefix, the script's numbers and its header text."""

    __slots__ = (
        "by",
        "fixed_key",
        "header_name",
        "ip_prefix",
        "limit",
        "name",
        "name_field",
        "prefix",
        "sliding",
        "steps",
        "t",
        "tau",
        "what",
        "window",
    )

    def __init__(self, rule: LimitRule, route: RouteInfo | None) -> None:
        """``route`` ``None``: a plan's limit, counted per consumer *name* over every route
        (one consumer proved by an API key or by a token whose subject names it is one)."""
        self.name = rule.policy_name
        self.limit = rule.limit
        self.window = rule.window
        self.sliding = rule.algorithm == "sliding-window"
        # The script's two numbers: GCRA's T and tolerance, or a sliding window's -window and limit.
        self.t, self.tau = _numbers(rule.limit, rule.window, self.sliding)
        kind, _, what = rule.by.partition(":")
        self.by = kind if route is not None else "plan"
        self.what = what
        self.steps = pointer_steps(what) if kind == "body" else ()
        # A `route` limit is the route's own.
        self.prefix = _prefix(rule, route.route_id if route is not None and kind == "route" else "")
        self.name_field = '"' + self.name + '"'
        # Named once here, not per request: the key of a global or route limit never changes,
        # and an IP limit's is this prefix and the address.
        self.fixed_key = self.prefix + "*" if self.by in ("global", "route") else ""
        self.ip_prefix = self.prefix + "ip:"
        self.header_name = what.lower() if kind == "header" else ""

    def key(self, exchange: Exchange) -> str:
        """The state key this request is counted under for this limit (the commonest kinds
        first, without :meth:`subject`'s walk through every kind)."""
        fixed = self.fixed_key
        if fixed:
            return fixed
        by = self.by
        request = exchange.request
        if by == "ip":
            return self.ip_prefix + request.client_ip
        if by == "header":
            value = header_get(request.headers, self.header_name)
            return self.prefix + _valued(value) if value else self.ip_prefix + request.client_ip
        return self.prefix + self.subject(exchange)

    def subject(self, exchange: Exchange) -> str:
        """Who this request is counted as; by client IP where the key's value is missing."""
        by = self.by
        request = exchange.request
        principal = exchange.principal
        value: str | None = None
        if by == "global" or by == "route":
            return "*"
        if by == "ip":
            return "ip:" + request.client_ip
        if by == "consumer":
            value = principal.consumer_id if principal is not None else None
        elif by == "credential":
            value = principal.credential_id if principal is not None else None
        elif by == "plan":
            value = principal.consumer_name if principal is not None else None
        elif by == "header":
            value = header_get(request.headers, self.header_name)
        elif by == "body":
            value = body_member(request, self.steps)
        elif principal is not None:  # claim
            claim = principal.claims.get(self.what)
            if isinstance(claim, str | int) and not isinstance(claim, bool):
                value = str(claim)
        if not value:
            return "ip:" + request.client_ip
        return _valued(value)


def _valued(value: str) -> str:
    """A key's subject for a value (a long one hashed: keys stay small)."""
    if len(value) > _MAX_VALUE:
        value = hashlib.sha256(value.encode()).hexdigest()
    return "=" + value


def _numbers(limit: int, window: float, sliding: bool) -> tuple[int, int]:
    """What the script is given for a limit: GCRA's ``T`` and tolerance ``(limit - 1) * T``,
    or, for a sliding window, ``-window`` (negative: so the script tells it apart) and ``limit``."""
    if sliding:
        return -window_us(window), limit
    t = interval_us(limit, window)
    return t, (limit - 1) * t


def _prefix(rule: LimitRule, scope: str) -> str:
    # The numbers are in the key: a changed limit starts afresh instead of reading a TAT
    # computed with another T (or a sliding window's log as a TAT).
    if rule.algorithm == "sliding-window":
        numbers = f"sw{window_us(rule.window)}"
    else:
        numbers = str(interval_us(rule.limit, rule.window))
    return f"ratelimit:{rule.policy_name}:{rule.limit}:{numbers}:{scope}:"


def plan_keys(plan: str, limits: PlanLimits, consumer_name: str) -> list[tuple[LimitRule, str]]:
    """Each limit of ``plan`` with the state key that counts ``consumer_name`` against it
    (for ``bastion consumers show``)."""
    return [(rule, _prefix(rule, "") + _valued(consumer_name)) for rule in limits.rules_of(plan)]


def _seconds(us: int) -> int:
    """Whole seconds, rounded up: a client told to wait never comes back too early."""
    return -(-us // 1_000_000)


class _LimitSet:
    """Limits checked together in one GCRA call, with their arguments after ``now``: for the
    shared limit (``tail``) and for this worker's share of it (``local_tail``, the fallback's,
    known once the worker starts the stage)."""

    __slots__ = ("limits", "local_tail", "policy", "policy_line", "prepared", "script", "tail")

    def __init__(self, limits: tuple[_Limit, ...], rules: list[LimitRule]) -> None:
        self.limits = limits
        self.tail = _tail(limits)
        #: The same Lua either way; the memory backend's copy for GCRA alone is the faster.
        self.script = LIMITS if any(limit.sliding for limit in limits) else GCRA
        self.local_tail: list[ScriptArg] = []
        #: The script and ``tail`` as the worker's backend prepared them (once it starts the stage).
        self.prepared: PreparedScript | None = None
        #: RateLimit-Policy for an answer these limits decided: written once.
        self.policy = ", ".join(
            f'"{rule.policy_name}";q={rule.limit};w={max(1, -int(-rule.window // 1))}' for rule in rules
        )
        #: The same as the header line the proxy appends to a head it forwards as bytes.
        self.policy_line = b"ratelimit-policy: " + self.policy.encode("latin-1") + b"\r\n"


class RateLimitStage(HeadStage, ResponseStage):
    """Counts each request against the route's limits, and a signed-in consumer's against its
    plan's; refuses with 429 past any of them."""

    uses_state = True
    #: Its response hook only adds the two RateLimit fields (:meth:`response_fields`).
    adds_fields_only = True

    def __init__(self, config: RateLimitConfig, route: RouteInfo) -> None:
        super().__init__("ratelimit", config)
        rules = config.rules()
        # Head-keyed limits first: they are decided (and written in the fields) first.
        head_rules = [r for r in rules if not _on_body(r)]
        ordered = head_rules + [r for r in rules if _on_body(r)]
        self.limits = tuple(_Limit(rule, route) for rule in ordered)
        self.head_limits = tuple(limit for limit in self.limits if limit.by != "body")
        self.body_limits = tuple(limit for limit in self.limits if limit.by == "body")
        self._head = _LimitSet(self.head_limits, ordered)
        self._body = _LimitSet(self.body_limits, ordered)
        #: RateLimit-Policy of a request without a plan: the same on every answer.
        self.policy_header = self._head.policy
        self.policy_line = self._head.policy_line
        #: Per plan: the route's head limits, then the plan's (checked in one call).
        self._plans: dict[str, _LimitSet] = {}
        names = {rule.policy_name for rule in rules}
        for plan, limits in config.plans.items():
            plan_rules = limits.rules_of(plan)
            clash = names.intersection(rule.policy_name for rule in plan_rules)
            if clash:
                raise PolicyError(
                    f"ratelimit: the plan {plan!r} has a limit named {sorted(clash)[0]!r}, like one of the route's; "
                    "rename one"
                )
            with_plan = [_Limit(rule, None) for rule in plan_rules]
            self._plans[plan] = _LimitSet((*self.head_limits, *with_plan), [*ordered, *plan_rules])
        self._state: StateBackend | None = None
        self._clock: Callable[[], float] | None = None
        #: With ``failure_mode: open`` on a shared backend: the worker's local limit.
        self._fallback: LocalFallback | None = None
        #: Who is on which plan (only where plans are defined).
        self._book: PlanBook | None = None

    @classmethod
    def from_config(cls, config: RateLimitConfig, route: RouteInfo) -> RateLimitStage | None:
        """The stage, or ``None`` where the settings name no limit and no plan (layers that
        only set ``failure_mode`` or ``enforce`` for the routes that have one); a
        :class:`RateLimitBodyStage` where a limit counts by a body member."""
        rules = config.rules()
        if not rules and not config.plans:
            return None
        return RateLimitBodyStage(config, route) if any(_on_body(r) for r in rules) else cls(config, route)

    async def start(self, services: Services) -> None:
        self._state = services.state
        # A shared backend answers with its own clock (one clock for every instance); the
        # memory backend is this process only, timed by the worker's (settable) clock.
        self._clock = None if services.state.shared else services.clock.monotonic
        config = self.config
        if not isinstance(config, RateLimitConfig):
            raise TypeError("the ratelimit stage was built with another stage's settings")
        for limit_set in (self._head, self._body, *self._plans.values()):
            limit_set.prepared = services.state.prepare(limit_set.script, len(limit_set.limits), limit_set.tail)
        if services.state.shared and config.failure_mode == "open":
            clock = services.clock.monotonic
            self._fallback = services.shared(SHARED_KEY, lambda: LocalFallback(clock))
            workers, instances = services.identity.workers, config.instances
            for limit_set in (self._head, self._body, *self._plans.values()):
                limit_set.local_tail = _local_tail(limit_set.limits, workers, instances)
        if self._plans:
            self._book = await plan_book(services)

    def _plan_set(self, exchange: Exchange) -> _LimitSet | None:
        """The signed-in consumer's plan's limits (with the route's), if it is on a plan."""
        book = self._book
        principal = exchange.principal
        if book is None or principal is None:
            return None
        plan = book.plan_of(principal.consumer_name)
        return self._plans.get(plan) if plan is not None else None

    def on_request_head(self, exchange: Exchange) -> RequestOutcome | Awaitable[RequestOutcome]:
        limit_set = self._plan_set(exchange) if self._plans else None
        if limit_set is None:
            limit_set = self._head
            if not limit_set.limits:
                return None
        return self._check(exchange, limit_set)

    def _check(self, exchange: Exchange, limit_set: _LimitSet) -> RequestOutcome | Awaitable[RequestOutcome]:
        keys = [limit.key(exchange) for limit in limit_set.limits]
        clock = self._clock
        now: ScriptArg = "" if clock is None else int(clock() * 1_000_000)
        state = self._state
        if state is None:
            raise DependencyUnavailable("the ratelimit stage was used before its worker started it")
        if state.immediate:
            # The memory backend answers at once: decide now, with no awaitable for the chain
            # to time (its deadline timer cost more than the script).
            return self._decide(exchange, limit_set, state.run_now(limit_set.script, keys, [now, *limit_set.tail]))
        return self._run(exchange, state, limit_set, keys, now)

    async def _run(
        self, exchange: Exchange, state: StateBackend, limit_set: _LimitSet, keys: list[str], now: ScriptArg
    ) -> RequestOutcome:
        prepared = limit_set.prepared
        if prepared is None:
            raise DependencyUnavailable("the ratelimit stage was used before its worker started it")
        fallback = self._fallback
        if fallback is None:
            answer = await state.run_prepared(prepared, keys, now)
        else:
            answer = await self._run_or_fall_back(fallback, state, prepared, keys, now, limit_set.local_tail)
        return self._decide(exchange, limit_set, answer)

    def _decide(self, exchange: Exchange, limit_set: _LimitSet, answer: ScriptResult) -> RequestOutcome:
        """Admit (noting the fields for the answer) or refuse, from the script's answer."""
        limits = limit_set.limits
        if not isinstance(answer, list) or len(answer) != 1 + 2 * len(limits):
            raise RuntimeError(f"the rate limit script answered {answer!r}")
        admitted = answer[0] == 1
        fields: list[str] = []
        wait = 0
        i = 1
        for limit in limits:
            remaining, us = answer[i], answer[i + 1]
            i += 2
            if not isinstance(remaining, int) or not isinstance(us, int):
                raise RuntimeError(f"the rate limit script answered {answer!r}")
            # t: whole seconds, rounded up (a client told to wait never comes back too early).
            fields.append(f"{limit.name_field};r={remaining};t={-(-us // 1_000_000)}")
            if not admitted and remaining == 0 and us > wait:
                wait = us
        current = fields[0] if len(fields) == 1 else ", ".join(fields)
        # The head phase's fields, when this is the body phase: one RateLimit for both.
        earlier = exchange.facts.get(self.name)
        if isinstance(earlier, str):
            current = earlier + ", " + current
        if admitted:
            exchange.facts[self.name] = current
            return None
        return Block(
            429,
            "Too Many Requests",
            "This client has made too many requests; retry after the number of seconds in Retry-After.",
            "ratelimit.exceeded",
            (
                ("retry-after", str(max(1, _seconds(wait)))),
                ("ratelimit-policy", self._policy(exchange)),
                ("ratelimit", current),
            ),
        )

    def _policy(self, exchange: Exchange) -> str:
        plan_set = self._plan_set(exchange) if self._plans else None
        return self.policy_header if plan_set is None else plan_set.policy

    async def _run_or_fall_back(
        self,
        fallback: LocalFallback,
        state: StateBackend,
        prepared: PreparedScript,
        keys: list[str],
        now: ScriptArg,
        local_tail: list[ScriptArg],
    ) -> ScriptResult:
        """The limits on the shared backend, or this worker's share of them while it is down."""
        if not fallback.skip_shared():
            try:
                answer = await state.run_prepared(prepared, keys, now)
            except DependencyUnavailable as exc:
                fallback.failed(exc)
            else:
                fallback.answered()
                return answer
        local_now = int(fallback.clock() * 1_000_000)
        return await fallback.run(prepared.script, keys, [local_now, *local_tail])

    def on_response(self, exchange: Exchange) -> Block | None:
        """The remaining quota on an answer the limit let through."""
        current = exchange.facts.get(self.name)
        response = exchange.response
        if response is not None and isinstance(current, str):
            response.headers.append(("ratelimit-policy", self._policy(exchange)))
            response.headers.append(("ratelimit", current))
        return None

    def response_fields(self, exchange: Exchange) -> bytes:
        """:meth:`on_response`'s two fields as the lines the proxy appends to a head it
        forwards as bytes (the policy's line encoded once, at load)."""
        current = exchange.facts.get(self.name)
        if not isinstance(current, str):
            return b""
        plan_set = self._plan_set(exchange) if self._plans else None
        policy = self.policy_line if plan_set is None else plan_set.policy_line
        return policy + b"ratelimit: " + current.encode("latin-1") + b"\r\n"


class RateLimitBodyStage(RateLimitStage, RequestStage):
    """The stage on a route with a limit keyed on a body member: those limits are checked and
    counted once the body is read (head-keyed ones still at the head, so a client they refuse
    uploads nothing). A request the body limits refuse has counted against the head limits,
    as one that a later stage refuses has."""

    needs_request_body = True

    def on_request(self, exchange: Exchange) -> RequestOutcome | Awaitable[RequestOutcome]:
        return self._check(exchange, self._body)


def _on_body(rule: LimitRule) -> bool:
    return rule.by.startswith("body:")


def _local_tail(limits: tuple[_Limit, ...], workers: int, instances: int) -> list[ScriptArg]:
    """The script's arguments after ``now`` for one worker's share of each limit."""
    out: list[ScriptArg] = []
    for limit in limits:
        out += _numbers(local_share(limit.limit, workers, instances), limit.window, limit.sliding)
    return out


def _tail(limits: tuple[_Limit, ...]) -> list[ScriptArg]:
    """The script's arguments after ``now``: each limit's two numbers (:func:`_numbers`)."""
    out: list[ScriptArg] = []
    for limit in limits:
        out += [limit.t, limit.tau]
    return out
