"""What a consumer has left of its plan's quotas and rate limits, read from the state backend
(for ``bastion consumers show`` and the developer portal; never on the request path).

Only a shared backend (Redis) can answer: with ``backends.state: memory`` each worker counts
in its own memory, so nothing outside the workers knows the counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bastion.config.model import Backends
    from bastion.stages.ratelimit.config import LimitRule, PlanLimits


@dataclass(frozen=True)
class LimitUsage:
    """One limit of a plan, and (when the backend is shared) what is left of it."""

    name: str
    #: ``rate limit`` or ``quota``.
    kind: str
    limit: int
    window: float
    #: Requests left now, and the seconds until the whole limit is available again (``None``
    #: when the backend cannot tell).
    left: int | None = None
    whole_in: int | None = None


def plan_limits(plan: str, limits: PlanLimits, consumer_name: str) -> list[tuple[LimitRule, str, str]]:
    """Each limit of ``plan`` with its kind and the state key counting ``consumer_name``."""
    from bastion.stages.ratelimit.stage import plan_keys

    kinds = ["rate limit"] * len(limits.rate_limits) + ["quota"] * len(limits.quotas)
    return [(rule, kind, key) for (rule, key), kind in zip(plan_keys(plan, limits, consumer_name), kinds, strict=True)]


async def read_left(backends: Backends, keyed: Sequence[tuple[LimitRule, str]]) -> list[tuple[int, int]]:
    """Each limit's requests left and the seconds until whole, read from Redis with its clock
    (:class:`bastion.errors.DependencyUnavailable` when Redis does not answer)."""
    from bastion.stages.ratelimit.gcra import PEEK, remaining
    from bastion.state.redis import RedisBackend

    r = backends.redis
    if r is None:  # the configuration's check makes this impossible with state: redis
        raise RuntimeError("backends.state is redis but backends.redis is not set")
    state = RedisBackend(r.url, timeout=r.timeout, key_prefix=r.key_prefix, max_connections=1)
    try:
        answer = await state.run(PEEK, [key for _, key in keyed], [""])
    finally:
        await state.close()
    if not isinstance(answer, list) or len(answer) != 1 + len(keyed):
        raise RuntimeError(f"the quota read answered {answer!r}")
    now = int(answer[0] or 0)
    out: list[tuple[int, int]] = []
    for (rule, _), tat in zip(keyed, answer[1:], strict=True):
        count, us = remaining(rule.limit, rule.window, int(tat or 0), now)
        out.append((count, -(-us // 1_000_000)))
    return out


async def plan_usage(backends: Backends, plan: str, limits: PlanLimits, consumer_name: str) -> list[LimitUsage]:
    """Every limit of ``plan`` for ``consumer_name``, with what is left where the backend is shared."""
    rows = plan_limits(plan, limits, consumer_name)
    left: list[tuple[int, int]] | None = None
    if backends.state == "redis" and rows:
        left = await read_left(backends, [(rule, key) for rule, _, key in rows])
    return [
        LimitUsage(rule.policy_name, kind, rule.limit, rule.window,
                   None if left is None else left[i][0], None if left is None else left[i][1])
        for i, (rule, kind, _) in enumerate(rows)
    ]
