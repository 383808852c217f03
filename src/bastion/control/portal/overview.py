"""What a developer sees of their consumer: requests, errors and blocked requests over the
last 24 hours (from the audit log, when it is kept in the store), the plan's quotas and rate
limits with what is left of them, and the security documentation of the APIs it can call
(the tester's generator, :mod:`bastion.tester.docs`, limited to those operations).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import timedelta

from markupsafe import Markup
from sqlalchemy import case, func, select
from starlette.requests import Request
from starlette.responses import Response

from bastion.config import LoadedConfig, ResolvedRoute
from bastion.control.context import AdminContext
from bastion.control.portal.web import Developer, page
from bastion.errors import DependencyUnavailable
from bastion.stages.access.config import AccessConfig
from bastion.stages.ratelimit.config import PlanLimits
from bastion.stages.ratelimit.usage import LimitUsage, plan_usage
from bastion.store.models import AuditRecord, utcnow

log = logging.getLogger("bastion.portal")


@dataclass(frozen=True)
class Traffic:
    requests: int
    errors: int
    blocked: int


def _traffic(ctx: AdminContext, consumer_id: str) -> Traffic:
    store = ctx.store()
    since = utcnow() - timedelta(hours=24)
    # The audit log names a request's consumer by its id; a request refused before anyone
    # was authenticated is nobody's.
    blocked = AuditRecord.decision == "blocked"
    query = select(
        func.count(),
        func.coalesce(func.sum(case(((AuditRecord.status >= 400) & ~blocked, 1), else_=0)), 0),
        func.coalesce(func.sum(case((blocked, 1), else_=0)), 0),
    ).where(AuditRecord.consumer == consumer_id, AuditRecord.ts >= since)
    with store.read() as session:
        total, errors, refused = session.execute(query).one()
    return Traffic(int(total), int(errors), int(refused))


async def home(ctx: AdminContext, request: Request, developer: Developer) -> Response:
    audit = ctx.config.config.audit
    traffic = await ctx.call(_traffic, ctx, developer.consumer_id) if audit.enabled and audit.store else None
    limits, limits_note = await _limits(ctx, developer)
    return page(request, "home.html", traffic=traffic, limits=limits, limits_note=limits_note,
                audit_on=traffic is not None)


async def _limits(ctx: AdminContext, developer: Developer) -> tuple[list[LimitUsage], str | None]:
    """The plan's limits (what ``bastion consumers show`` computes), and a note on what is missing."""
    plans = ctx.config.config.plans
    if developer.plan is None or developer.plan not in plans:
        return [], "Your consumer has no plan: only each operation's own rate limits apply."
    limits = PlanLimits.model_validate(plans[developer.plan])
    backends = ctx.config.config.backends
    try:
        usage = await plan_usage(backends, developer.plan, limits, developer.consumer)
    except (DependencyUnavailable, OSError, RuntimeError) as exc:
        log.warning("portal: the quotas of %s cannot be read: %s", developer.consumer, exc)
        from bastion.stages.ratelimit.usage import plan_limits

        usage = [LimitUsage(rule.policy_name, kind, rule.limit, rule.window)
                 for rule, kind, _ in plan_limits(developer.plan, limits, developer.consumer)]
        return usage, "What is left cannot be read right now (the state backend does not answer)."
    if backends.state != "redis":
        return usage, "What is left is counted inside the gateway's workers and not shown here."
    return usage, None


# -- documentation ---------------------------------------------------------------------------

def callable_by(route: ResolvedRoute, roles: tuple[str, ...]) -> bool:
    """Whether a consumer with ``roles`` may call ``route`` at all (its scopes aside): public,
    or its access rules ask for no role it lacks."""
    if route.public:
        return True
    for _spec, settings in route.stages:
        if isinstance(settings, AccessConfig):
            if settings.roles and not set(settings.roles) & set(roles):
                return False
            if settings.admin and not set(settings.admin_roles) & set(roles):
                return False
    return True


def _visible(loaded: LoadedConfig, roles: tuple[str, ...]) -> LoadedConfig:
    routes = tuple(r for r in loaded.routes if callable_by(r, roles))
    services = {r.service for r in routes}
    config = loaded.config.model_copy(update={"services": [s for s in loaded.config.services if s.name in services]})
    return dataclasses.replace(loaded, config=config, routes=routes)


async def docs(ctx: AdminContext, request: Request, developer: Developer) -> Response:
    """The generated security guide, for the operations this developer's consumer can call."""
    from bastion.tester.docs import build_site, render_html

    visible = _visible(ctx.config, developer.roles)
    if not visible.routes:
        return page(request, "message.html", title="API documentation",
                    text="Your consumer can call no operation yet: ask the API's operators for access.")
    # render_html autoescapes everything it takes from the configuration and the OpenAPI
    # documents (its own tests prove it): what it returns is HTML to keep as it is.
    guide = Markup(_body_of(render_html(build_site(visible))))  # noqa: S704
    return page(request, "docs.html", guide=guide)


def _body_of(html: str) -> str:
    """The guide's content, without its document (head, inline style), to sit in a portal page.
    The generator escaped every text it took from the configuration and OpenAPI documents."""
    start, end = html.find("<body>"), html.rfind("</body>")
    return html[start + len("<body>"):end] if start >= 0 and end > start else ""
