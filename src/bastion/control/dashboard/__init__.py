"""The web dashboard, served by the admin listener under ``/ui`` (``admin.dashboard``).

Server-rendered pages (Jinja2, autoescaped) with a strict Content-Security-Policy: no inline
script or style, nothing loaded from elsewhere, no framing. One small stylesheet and one small
script of our own, served from the package, so the dashboard works offline. Sign-in is in
:mod:`.login`; the pages in :mod:`.pages`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bastion.control.accounts.roles import Role
from bastion.control.auth import requires
from bastion.control.context import AdminContext
from bastion.control.dashboard.discovery import Discovery
from bastion.control.dashboard.login import LoginFlow
from bastion.control.dashboard.pages import Pages
from bastion.control.dashboard.portalreset import PortalReset
from bastion.control.dashboard.reports import Reports
from bastion.control.dashboard.web import LOGIN_PAGE, PREFIX, refusal_page, static_file


def routes(ctx: AdminContext) -> list[BaseRoute]:
    """The dashboard's routes, or none when ``admin.dashboard`` is false."""
    if not ctx.settings.dashboard:
        return []
    flow = LoginFlow(ctx)
    pages = Pages(ctx)
    reset = PortalReset(ctx, pages)
    reports = Reports(ctx)
    discovery = Discovery(ctx)
    viewer = requires(Role.VIEWER, login_page=LOGIN_PAGE, html_refusal=refusal_page)
    operator = requires(Role.OPERATOR, login_page=LOGIN_PAGE, html_refusal=refusal_page)

    async def home(_: Request) -> Response:
        return RedirectResponse(PREFIX + "/", status_code=307)

    async def static(request: Request) -> Response:
        return static_file(request.path_params["name"])

    return [
        Route(PREFIX, home, methods=["GET"]),
        Route(PREFIX + "/static/{name}", static, methods=["GET"]),
        Route(LOGIN_PAGE, flow.form, methods=["GET"]),
        Route(LOGIN_PAGE, flow.submit, methods=["POST"]),
        Route(LOGIN_PAGE + "/step", flow.step_form, methods=["GET"]),
        Route(LOGIN_PAGE + "/step", flow.step_submit, methods=["POST"]),
        Route(PREFIX + "/logout", viewer(flow.logout), methods=["POST"]),
        Route(PREFIX + "/", viewer(pages.overview), methods=["GET"]),
        Route(PREFIX + "/feed", viewer(pages.feed), methods=["GET"]),
        Route(PREFIX + "/feed/stream", viewer(pages.feed_stream), methods=["GET"]),
        Route(PREFIX + "/blocked", viewer(pages.blocked), methods=["GET"]),
        Route(PREFIX + "/alerts", viewer(pages.alerts), methods=["GET"]),
        Route(PREFIX + "/alerts/{alert_id}", operator(pages.alert_status), methods=["POST"]),
        Route(PREFIX + "/consumers", viewer(pages.consumers), methods=["GET"]),
        Route(PREFIX + "/consumers", operator(pages.create_consumer), methods=["POST"]),
        Route(PREFIX + "/keys", operator(pages.create_key), methods=["POST"]),
        Route(PREFIX + "/portal-reset", operator(reset.submit), methods=["POST"]),
        Route(PREFIX + "/routes", viewer(pages.routes), methods=["GET"]),
        Route(PREFIX + "/discovery", viewer(discovery.page), methods=["GET"]),
        Route(PREFIX + "/discovery/draft.yaml", viewer(discovery.draft), methods=["GET"]),
        Route(PREFIX + "/reports", viewer(reports.index), methods=["GET"]),
        Route(PREFIX + "/reports/audit", viewer(reports.audit), methods=["GET"]),
        Route(PREFIX + "/reports/audit", operator(reports.rerun), methods=["POST"]),
        Route(PREFIX + "/reports/scans/{name}", viewer(reports.scan), methods=["GET"]),
    ]
