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

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from bastion.errors import PolicyError
from bastion.pipeline.stage import HeadStage, RequestHook, RequestOutcome, RequestStage, ResponseStage, RouteInfo
from bastion.stages.ratelimit.config import LimitRule, PlanLimits, RateLimitConfig
from bastion.stages.ratelimit.fallback import SHARED_KEY, LocalFallback, local_share
from bastion.stages.ratelimit.limiter import Limit, Limiter, LimitSet, numbers, prefix, valued
from bastion.stages.ratelimit.plans import plan_book
from bastion.state.interface import ScriptArg
from bastion.types import Exchange

if TYPE_CHECKING:
    from bastion.services import Services


def plan_keys(plan: str, limits: PlanLimits, consumer_name: str) -> list[tuple[LimitRule, str]]:
    """Each limit of ``plan`` with the state key that counts ``consumer_name`` against it
    (for ``bastion consumers show``)."""
    return [(rule, prefix(rule, "") + valued(consumer_name)) for rule in limits.rules_of(plan)]


class RateLimitStage(HeadStage, ResponseStage):
    """Counts each request against the route's limits, and a signed-in consumer's against its
    plan's; refuses with 429 past any of them. The per-request work is the compiled
    :class:`~bastion.stages.ratelimit.limiter.Limiter`'s, whose head hook the chain calls."""

    uses_state = True
    #: Its response hook only adds the two RateLimit fields (:meth:`response_fields`).
    adds_fields_only = True

    def __init__(self, config: RateLimitConfig, route: RouteInfo) -> None:
        super().__init__("ratelimit", config)
        rules = config.rules()
        # Head-keyed limits first: they are decided (and written in the fields) first.
        head_rules = [r for r in rules if not _on_body(r)]
        ordered = head_rules + [r for r in rules if _on_body(r)]
        self.limits = tuple(Limit(rule, route.route_id) for rule in ordered)
        self.head_limits = tuple(limit for limit in self.limits if limit.by != "body")
        self.body_limits = tuple(limit for limit in self.limits if limit.by == "body")
        head = LimitSet(self.head_limits, ordered)
        #: RateLimit-Policy of a request without a plan: the same on every answer.
        self.policy_header = head.policy
        self.policy_line = head.policy_line
        #: Per plan: the route's head limits, then the plan's (checked in one call).
        plans: dict[str, LimitSet] = {}
        names = {rule.policy_name for rule in rules}
        for plan, limits in config.plans.items():
            plan_rules = limits.rules_of(plan)
            clash = names.intersection(rule.policy_name for rule in plan_rules)
            if clash:
                raise PolicyError(
                    f"ratelimit: the plan {plan!r} has a limit named {sorted(clash)[0]!r}, like one of the route's; "
                    "rename one"
                )
            with_plan = [Limit(rule, None) for rule in plan_rules]
            plans[plan] = LimitSet((*self.head_limits, *with_plan), [*ordered, *plan_rules])
        self._limiter = Limiter(self.name, head, LimitSet(self.body_limits, ordered), plans)

    @classmethod
    def from_config(cls, config: RateLimitConfig, route: RouteInfo) -> RateLimitStage | None:
        """The stage, or ``None`` where the settings name no limit and no plan (layers that
        only set ``failure_mode`` or ``enforce`` for the routes that have one); a
        :class:`RateLimitBodyStage` where a limit counts by a body member."""
        rules = config.rules()
        if not rules and not config.plans:
            return None
        return RateLimitBodyStage(config, route) if any(_on_body(r) for r in rules) else cls(config, route)

    def _sets(self) -> tuple[LimitSet, ...]:
        limiter = self._limiter
        return (limiter.head, limiter.body, *limiter.plans.values())

    async def start(self, services: Services) -> None:
        limiter = self._limiter
        limiter.state = services.state
        # A shared backend answers with its own clock (one clock for every instance); the
        # memory backend is this process only, timed by the worker's (settable) clock.
        limiter.clock = None if services.state.shared else services.clock.monotonic
        config = self.config
        if not isinstance(config, RateLimitConfig):
            raise TypeError("the ratelimit stage was built with another stage's settings")
        for limit_set in self._sets():
            limit_set.prepared = services.state.prepare(limit_set.script, len(limit_set.limits), limit_set.tail)
        if services.state.shared and config.failure_mode == "open":
            clock = services.clock.monotonic
            limiter.fallback = services.shared(SHARED_KEY, lambda: LocalFallback(clock))
            workers, instances = services.identity.workers, config.instances
            for limit_set in self._sets():
                limit_set.local_tail = _local_tail(limit_set.limits, workers, instances)
        if limiter.plans:
            limiter.book = await plan_book(services)

    def head_hook(self) -> RequestHook:
        """The compiled limiter's own hook: :meth:`on_request_head` would only add an
        interpreted call around it, on every request."""
        return self._limiter.on_head

    def on_request_head(self, exchange: Exchange) -> RequestOutcome | Awaitable[RequestOutcome]:
        return self._limiter.on_head(exchange)

    def on_response(self, exchange: Exchange) -> None:
        """The remaining quota on an answer the limit let through."""
        current = self._limiter.current(exchange)
        response = exchange.response
        if response is not None and current is not None:
            response.headers.append(("ratelimit-policy", self._limiter.policy(exchange)))
            response.headers.append(("ratelimit", current))

    def response_fields(self, exchange: Exchange) -> bytes:
        """:meth:`on_response`'s two fields as the lines the proxy appends to a head it
        forwards as bytes (the policy's line encoded once, at load)."""
        return self._limiter.fields(exchange)


class RateLimitBodyStage(RateLimitStage, RequestStage):
    """The stage on a route with a limit keyed on a body member: those limits are checked and
    counted once the body is read (head-keyed ones still at the head, so a client they refuse
    uploads nothing). A request the body limits refuse has counted against the head limits,
    as one that a later stage refuses has."""

    needs_request_body = True

    def request_hook(self) -> RequestHook:
        return self._limiter.on_body

    def on_request(self, exchange: Exchange) -> RequestOutcome | Awaitable[RequestOutcome]:
        return self._limiter.on_body(exchange)


def _on_body(rule: LimitRule) -> bool:
    return rule.by.startswith("body:")


def _local_tail(limits: tuple[Limit, ...], workers: int, instances: int) -> list[ScriptArg]:
    """The script's arguments after ``now`` for one worker's share of each limit."""
    out: list[ScriptArg] = []
    for limit in limits:
        out += numbers(local_share(limit.limit, workers, instances), limit.window, limit.sliding)
    return out
