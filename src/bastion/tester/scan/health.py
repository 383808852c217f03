"""The health watch: is the target still the app the scan started on?

After discovery the engine picks a few *baseline* requests that answered 2xx: for each identity a read
without path parameters (its profile or a list of its objects) and one object it created, and one
anonymous read. Between checks they are sent again. The target is **broken** when a baseline that
answered 2xx now answers 5xx or nothing at all, an identity's baseline answers 401/403 (its account or
session stopped working) and logging it in again fails, an object the scan created answers 404/410, or a
list that had objects is now empty (the data vanished). A broken reading is confirmed by a second try
before the scan stops; 429 counts as healthy (the API is only slowing the scan down). An identity whose
session ended but that logs in again is a warning: the scan goes on with the new session.

The scan does not carry on against a broken app: the remaining checks are skipped with the reason, and
every report says what broke and after which check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bastion.tester.audit.context import Operation
from bastion.tester.scan.interface import Exchange, Identity, RequestPlan

__all__ = ["Baseline", "HealthEvent", "judge"]

Sender = Callable[[RequestPlan, Identity], Awaitable[Exchange]]


@dataclass(frozen=True, slots=True)
class Baseline:
    """A request that answered 2xx when the scan started, and how many objects its list held."""

    op: Operation
    identity: Identity
    plan: RequestPlan
    status: int
    items: int  # objects in a list answer (0 when not a list)
    #: An object the identity created during discovery (its disappearance is lost data).
    created: bool = False


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """Something the health watch saw: after which check, what, and whether the scan stopped."""

    after: str  # a check ID, "discovery" or "login"
    message: str
    stopped: bool


def judge(baseline: Baseline, now: Exchange, items: int) -> str | None:
    """Why ``now`` (the baseline sent again) shows a broken target, or None when it looks healthy."""
    who = baseline.identity.name
    label = baseline.op.label
    if now.status == 429:
        return None
    if now.status == 0:
        return f"{label} as {who} got no answer ({now.error}); it answered {baseline.status} at the start"
    if now.status >= 500:
        return f"{label} as {who} now answers {now.status}; it answered {baseline.status} at the start"
    if now.status in (401, 403) and baseline.identity.role != "anonymous":
        return (f"{who}'s credentials stopped working: {label} answers {now.status} (it answered "
                f"{baseline.status} at the start); the account or its session is gone")
    if baseline.created and now.status in (404, 410):
        return f"{who}'s object at {baseline.plan.path} (created by the scan) answers {now.status}: data vanished"
    if baseline.items > 0 and items == 0 and 200 <= now.status < 300:
        return f"{label} as {who} listed {baseline.items} object(s) at the start and lists none now: data vanished"
    if not 200 <= now.status < 300 and now.status != 304:
        return f"{label} as {who} now answers {now.status}; it answered {baseline.status} at the start"
    return None


def summary(events: Sequence[HealthEvent]) -> str:
    """One line for reports: healthy, or what broke."""
    if not events:
        return "healthy: the baseline requests answered as at the start after every check"
    return "; ".join(f"after {e.after}: {e.message}" + (" (scan stopped)" if e.stopped else "") for e in events)
