"""The ``ratelimit`` stage's per-request work, compiled with mypyc (setup.py).

Everything that does not depend on the request is done here once, when a route's stage is
built: each limit's key prefix (the key of a global or route limit whole), the script's
numbers, the ``RateLimit-Policy`` text and line, and a template for the ``RateLimit`` field
(the policy names quoted, the numbers left as ``%d``). Per request: a key per limit, one
script call for all of them, and one ``%`` format of the script's answer into the template.

The stage class itself stays interpreted (as every stage class: compiled, its abstract bases
were not what ``isinstance`` and the chain expect) and hands the chain :meth:`Limiter.on_head`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bastion.errors import DependencyUnavailable
from bastion.sensitive.evidence import TrustedText
from bastion.stages.ratelimit.body import body_member, pointer_steps
from bastion.stages.ratelimit.fallback import LocalFallback
from bastion.stages.ratelimit.gcra import GCRA, LIMITS, interval_us, window_us
from bastion.state.interface import PreparedScript, Script, ScriptArg, ScriptResult, StateBackend
from bastion.types import Block, Exchange, Response, header_get

if TYPE_CHECKING:
    from bastion.stages.ratelimit.config import LimitRule
    from bastion.stages.ratelimit.plans import PlanBook

#: What a request hook decides (:data:`bastion.pipeline.stage.RequestOutcome`).
Outcome = Block | Response | None
#: A key value longer than this (a header's) is stored as its hash: keys stay small.
MAX_VALUE = 128


class Limit:
    """One limit compiled for a route: its key prefix, the script's numbers and its header text."""

    def __init__(self, rule: LimitRule, route_id: str | None) -> None:
        """``route_id`` ``None``: a plan's limit, counted per consumer *name* over every route
        (one consumer proved by an API key or by a token whose subject names it is one)."""
        self.name: str = rule.policy_name
        self.limit: int = rule.limit
        self.window: float = rule.window
        self.sliding: bool = rule.algorithm == "sliding-window"
        # The script's two numbers: GCRA's T and tolerance, or a sliding window's -window and limit.
        self.t, self.tau = numbers(rule.limit, rule.window, self.sliding)
        kind, _, what = rule.by.partition(":")
        self.by: str = kind if route_id is not None else "plan"
        self.what: str = what
        self.steps: tuple[str, ...] = pointer_steps(what) if kind == "body" else ()
        # A `route` limit is the route's own.
        self.prefix: str = prefix(rule, route_id if route_id is not None and kind == "route" else "")
        self.name_field: str = '"' + self.name + '"'
        # Named once here, not per request: the key of a global or route limit never changes,
        # and an IP limit's is this prefix and the address.
        self.fixed_key: str = self.prefix + "*" if self.by in ("global", "route") else ""
        self.ip_prefix: str = self.prefix + "ip:"
        self.header_name: str = what.lower() if kind == "header" else ""

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
            return self.prefix + valued(value) if value else self.ip_prefix + request.client_ip
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
            if isinstance(claim, str) or (isinstance(claim, int) and not isinstance(claim, bool)):
                value = str(claim)
        if not value:
            return "ip:" + request.client_ip
        return valued(value)


def valued(value: str) -> str:
    """A key's subject for a value (a long one hashed: keys stay small)."""
    if len(value) > MAX_VALUE:
        value = hashlib.sha256(value.encode()).hexdigest()
    return "=" + value


def numbers(limit: int, window: float, sliding: bool) -> tuple[int, int]:
    """What the script is given for a limit: GCRA's ``T`` and tolerance ``(limit - 1) * T``,
    or, for a sliding window, ``-window`` (negative: so the script tells it apart) and ``limit``."""
    if sliding:
        return -window_us(window), limit
    t = interval_us(limit, window)
    return t, (limit - 1) * t


def prefix(rule: LimitRule, scope: str) -> str:
    """The start of every key of ``rule``'s limit (``scope``: the route's id for a route limit)."""
    # The numbers are in the key: a changed limit starts afresh instead of reading a TAT
    # computed with another T (or a sliding window's log as a TAT).
    if rule.algorithm == "sliding-window":
        figures = f"sw{window_us(rule.window)}"
    else:
        figures = str(interval_us(rule.limit, rule.window))
    return f"ratelimit:{rule.policy_name}:{rule.limit}:{figures}:{scope}:"


def seconds(us: int) -> int:
    """Whole seconds, rounded up: a client told to wait never comes back too early."""
    return -(-us // 1_000_000)


class LimitSet:
    """Limits checked together in one script call, with their arguments after ``now``: for
    the shared limit (``tail``) and for this worker's share of it (``local_tail``, the
    fallback's, known once the worker starts the stage)."""

    def __init__(self, limits: tuple[Limit, ...], rules: list[LimitRule]) -> None:
        self.limits = limits
        self.tail: list[ScriptArg] = tail(limits)
        #: The same Lua either way; the memory backend's copy for GCRA alone is the faster.
        self.script: Script = LIMITS if any(limit.sliding for limit in limits) else GCRA
        self.local_tail: list[ScriptArg] = []
        #: The script and ``tail`` as the worker's backend prepared them (once it starts the stage).
        self.prepared: PreparedScript | None = None
        #: The length of the script's answer: admitted, then two numbers per limit.
        self.answer_length = 1 + 2 * len(limits)
        #: RateLimit-Policy for an answer these limits decided: written once.
        self.policy = ", ".join(
            f'"{rule.policy_name}";q={rule.limit};w={max(1, -int(-rule.window // 1))}' for rule in rules
        )
        #: The same as the header line the proxy appends to a head it forwards as bytes.
        self.policy_line = b"ratelimit-policy: " + self.policy.encode("latin-1") + b"\r\n"
        #: The RateLimit field with each limit's remaining requests and seconds left as
        #: ``%d``: one format per request (a ``%`` in a name is escaped).
        self.template = ", ".join(limit.name_field.replace("%", "%%") + ";r=%d;t=%d" for limit in limits)


def tail(limits: tuple[Limit, ...]) -> list[ScriptArg]:
    """The script's arguments after ``now``: each limit's two numbers (:func:`numbers`)."""
    out: list[ScriptArg] = []
    for limit in limits:
        out.append(limit.t)
        out.append(limit.tau)
    return out


class Limiter:
    """The stage's hooks over its limit sets: the route's head limits, its body limits and,
    per plan, the route's head limits with the plan's. The worker fills in the state backend
    and the rest when it starts the stage (:meth:`RateLimitStage.start`)."""

    def __init__(self, name: str, head: LimitSet, body: LimitSet, plans: dict[str, LimitSet]) -> None:
        self.name = name
        self.head = head
        self.body = body
        self.plans = plans
        self.state: StateBackend | None = None
        #: The worker's clock for the memory backend; ``None``: the shared backend's own.
        self.clock: Callable[[], float] | None = None
        #: With ``failure_mode: open`` on a shared backend: the worker's local limit.
        self.fallback: LocalFallback | None = None
        #: Who is on which plan (only where plans are defined).
        self.book: PlanBook | None = None

    def plan_set(self, exchange: Exchange) -> LimitSet | None:
        """The signed-in consumer's plan's limits (with the route's), if it is on a plan."""
        book = self.book
        principal = exchange.principal
        if book is None or principal is None:
            return None
        plan = book.plan_of(principal.consumer_name)
        return self.plans.get(plan) if plan is not None else None

    def on_head(self, exchange: Exchange) -> Outcome | Awaitable[Outcome]:
        """The stage's head hook: the head-keyed limits (with the consumer's plan's)."""
        limit_set = self.plan_set(exchange) if self.plans else None
        if limit_set is None:
            limit_set = self.head
            if not limit_set.limits:
                return None
        return self.check(exchange, limit_set)

    def on_body(self, exchange: Exchange) -> Outcome | Awaitable[Outcome]:
        """The request hook of a route with body-keyed limits: those limits."""
        return self.check(exchange, self.body)

    def check(self, exchange: Exchange, limit_set: LimitSet) -> Outcome | Awaitable[Outcome]:
        """Count the request against ``limit_set`` (at once on the memory backend)."""
        keys = [limit.key(exchange) for limit in limit_set.limits]
        clock = self.clock
        now: ScriptArg = "" if clock is None else int(clock() * 1_000_000)
        state = self.state
        if state is None:
            raise DependencyUnavailable("the ratelimit stage was used before its worker started it")
        if state.immediate:
            # The memory backend answers at once: decide now, with no awaitable for the chain
            # to time (its deadline timer cost more than the script).
            args: list[ScriptArg] = [now]
            args.extend(limit_set.tail)
            return self.decide(exchange, limit_set, state.run_now(limit_set.script, keys, args))
        return self.run(exchange, state, limit_set, keys, now)

    async def run(
        self, exchange: Exchange, state: StateBackend, limit_set: LimitSet, keys: list[str], now: ScriptArg
    ) -> Outcome:
        prepared = limit_set.prepared
        if prepared is None:
            raise DependencyUnavailable("the ratelimit stage was used before its worker started it")
        fallback = self.fallback
        if fallback is None:
            answer = await state.run_prepared(prepared, keys, now)
        else:
            answer = await self.run_or_fall_back(fallback, state, prepared, keys, now, limit_set.local_tail)
        return self.decide(exchange, limit_set, answer)

    async def run_or_fall_back(
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
        local_now: ScriptArg = int(fallback.clock() * 1_000_000)
        args: list[ScriptArg] = [local_now]
        args.extend(local_tail)
        return await fallback.run(prepared.script, keys, args)

    def decide(self, exchange: Exchange, limit_set: LimitSet, answer: ScriptResult) -> Outcome:
        """Admit (noting the fields for the answer) or refuse, from the script's answer."""
        if not isinstance(answer, list) or len(answer) != limit_set.answer_length:
            raise RuntimeError(f"the rate limit script answered {answer!r}")
        admitted = answer[0] == 1
        figures: list[int] = []
        wait = 0
        i = 1
        for _ in limit_set.limits:
            remaining, us = answer[i], answer[i + 1]
            i += 2
            if not isinstance(remaining, int) or not isinstance(us, int):
                raise RuntimeError(f"the rate limit script answered {answer!r}")
            figures.append(remaining)
            # t: whole seconds, rounded up (a client told to wait never comes back too early).
            figures.append(-(-us // 1_000_000))
            if not admitted and remaining == 0 and us > wait:
                wait = us
        current = limit_set.template % tuple(figures)
        # The head phase's fields, when this is the body phase: one RateLimit for both.
        earlier = exchange.facts.get(self.name)
        if isinstance(earlier, str):
            current = earlier + ", " + current
        if admitted:
            # The limits' own names and numbers, no request text: the record's evidence
            # redactor has nothing to look for in it.
            exchange.facts[self.name] = TrustedText(current)
            return None
        return Block(
            429,
            "Too Many Requests",
            "This client has made too many requests; retry after the number of seconds in Retry-After.",
            "ratelimit.exceeded",
            (
                ("retry-after", str(max(1, seconds(wait)))),
                ("ratelimit-policy", self.policy(exchange)),
                ("ratelimit", current),
            ),
        )

    def policy(self, exchange: Exchange) -> str:
        """The RateLimit-Policy field of this request's answer."""
        plan_set = self.plan_set(exchange) if self.plans else None
        return self.head.policy if plan_set is None else plan_set.policy

    def current(self, exchange: Exchange) -> str | None:
        """The RateLimit field the request hooks left for the answer, if they admitted it."""
        fact = exchange.facts.get(self.name)
        return fact if isinstance(fact, str) else None

    def fields(self, exchange: Exchange) -> bytes:
        """The two fields as the lines the proxy appends to a head it forwards as bytes (the
        policy's line encoded once, at load)."""
        fact = exchange.facts.get(self.name)
        if not isinstance(fact, str):
            return b""
        plan_set = self.plan_set(exchange) if self.plans else None
        policy = self.head.policy_line if plan_set is None else plan_set.policy_line
        return policy + b"ratelimit: " + fact.encode("latin-1") + b"\r\n"
