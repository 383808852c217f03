"""The admin API (Starlette): health, readiness, reload, version and Prometheus metrics."""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion import __version__
from bastion.control.metrics import SnapshotCollector


class Supervised(Protocol):
    """What the admin API needs from the supervisor."""

    def workers_alive(self) -> tuple[int, int]: ...
    def ready(self) -> bool: ...
    def reload(self) -> list[str]: ...


def create_admin_app(sup: Supervised, collector: SnapshotCollector) -> Starlette:
    """The admin application for one supervisor."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)

    async def health(_: Request) -> Response:
        alive, wanted = sup.workers_alive()
        return JSONResponse(
            {"status": "ok" if alive else "down", "workers": alive, "workers_wanted": wanted},
            status_code=200 if alive else 503,
        )

    async def ready(_: Request) -> Response:
        ok = sup.ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def reload(_: Request) -> Response:
        errors = sup.reload()
        if errors:
            return JSONResponse(
                {
                    "type": "about:blank",
                    "title": "Configuration rejected",
                    "status": 422,
                    "detail": "The new configuration is invalid; the previous one keeps serving.",
                    "errors": errors,
                },
                status_code=422,
                media_type="application/problem+json",
            )
        return JSONResponse({"reloaded": True})

    async def version(_: Request) -> Response:
        return JSONResponse({"name": "bastion", "version": __version__})

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/reload", reload, methods=["POST"]),
            Route("/version", version, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )
