"""The admin listener (Starlette): health, readiness, version and metrics, then the parts of
the control plane, each behind :func:`bastion.control.auth.requires` with the least role it
needs: the admin API, the dashboard, the developer portal."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion import __version__
from bastion.control import api, dashboard, portal
from bastion.control.accounts.roles import Role
from bastion.control.auth import Principal, authenticate, principal_of, requires
from bastion.control.context import AdminContext, Supervised
from bastion.control.metrics import SnapshotCollector
from bastion.control.problem import problem

#: The parts of the control plane, each a function of the context giving its routes: the
#: admin API (then the dashboard and the developer portal).
Part = Callable[[AdminContext], list[BaseRoute]]
PARTS: list[Part] = [api.routes, dashboard.routes, portal.routes]


def _core_routes(ctx: AdminContext, registry: CollectorRegistry) -> list[BaseRoute]:
    sup = ctx.sup

    async def health(_: Request) -> Response:
        alive, wanted = sup.workers_alive()
        return JSONResponse(
            {"status": "ok" if alive else "down", "workers": alive, "workers_wanted": wanted},
            status_code=200 if alive else 503,
        )

    async def ready(_: Request) -> Response:
        ok = sup.ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @requires(Role.OPERATOR)
    async def reload(request: Request) -> Response:
        errors = sup.reload()
        await ctx.call(_audit_reload, ctx, principal_of(request), errors)
        if errors:
            return problem(422, "The new configuration is invalid; the previous one keeps serving.",
                           title="Configuration rejected", errors=errors)
        return JSONResponse({"reloaded": True})

    async def version(_: Request) -> Response:
        return JSONResponse({"name": "bastion", "version": __version__})

    async def metrics(request: Request) -> Response:
        if not ctx.settings.public_metrics:
            principal = await authenticate(ctx, request)
            if principal is None:
                return problem(401, "Metrics need an admin token (admin.public_metrics is false).",
                               headers={"WWW-Authenticate": 'Bearer realm="bastion-admin"'})
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    return [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/reload", reload, methods=["POST"]),
        Route("/version", version, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def _audit_reload(ctx: AdminContext, principal: Principal, errors: list[str]) -> None:
    """A reload is a write: who asked for it, and what came of it (the file's own changes are
    its history; the trail keeps the outcome)."""
    from bastion.store import adminaudit

    outcome: dict[str, object] = {"accepted": not errors, "routes": len(ctx.config.routes)}
    if errors:
        outcome["errors"] = errors[:20]
    with ctx.store().write() as session:
        who = principal.audit()
        adminaudit.record(session, actor=who["actor"], via=who["via"], source=who["source"], action="config.reload",
                          target="config", after=outcome)


class _Hardening:
    """Headers every control-plane response carries: nothing is cached, sniffed or framed,
    and no referrer leaks a path (the pages set their own Content-Security-Policy)."""

    HEADERS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
               (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-store"))

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (name, value) for name, value in self.HEADERS if name not in present]
            await send(message)

        await self.app(scope, receive, send_hardened)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, exc.detail or "", headers=dict(exc.headers) if exc.headers else None)


async def _server_error(request: Request, exc: Exception) -> Response:
    # Never a stack trace to the client; the supervisor's log has it (Starlette logs it).
    return problem(500, "The admin server failed on this request; see its log.", title="Internal error")


def create_admin_app(sup: Supervised, collector: SnapshotCollector) -> Starlette:
    """The admin application for one supervisor."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ctx = AdminContext(sup, collector)
    routes = _core_routes(ctx, registry)
    for part in PARTS:
        routes += part(ctx)
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _server_error})
    app.state.ctx = ctx
    app.add_middleware(_Hardening)
    return app
