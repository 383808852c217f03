"""The admin API (REST + JSON under ``/api/v1``), described by its own OpenAPI document.

Each resource module declares its endpoints as :class:`Endpoint` values in ``ENDPOINTS``
(method, path, handler, the least role it needs, a summary, and the JSON Schemas of its
request and response bodies); :data:`MODULES` lists them. :func:`routes` mounts them behind
:func:`bastion.control.auth.requires`, and the OpenAPI document at ``/openapi.json`` is
made from the same declarations, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.control.accounts.roles import Role
from bastion.control.auth import requires
from bastion.control.context import AdminContext

PREFIX = "/api/v1"
Handler = Callable[[AdminContext, Request], Awaitable[Response]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    #: Below :data:`PREFIX`, in Starlette's form (``/consumers/{name}``), which is also OpenAPI's.
    path: str
    handler: Handler
    role: Role
    summary: str
    operation_id: str
    tag: str
    request_schema: dict[str, Any] | None = None
    response_schema: dict[str, Any] | None = None
    #: Status codes it answers besides 200, with what each means.
    responses: dict[int, str] = field(default_factory=dict)
    #: Query parameters: name -> (JSON Schema, description).
    query: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)


#: The resource modules, each a list of endpoints (filled in as resources land).
MODULES: list[list[Endpoint]] = []


def endpoints() -> list[Endpoint]:
    return [e for module in MODULES for e in module]


def routes(ctx: AdminContext) -> list[BaseRoute]:
    """Every endpoint of :data:`MODULES`, guarded by its role."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints():
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    mounted: list[BaseRoute] = []
    for path, methods in by_path.items():
        mounted.append(Route(PREFIX + path, _dispatch(ctx, methods), methods=sorted(methods)))
    return mounted


def _dispatch(ctx: AdminContext, methods: dict[str, Endpoint]) -> Callable[[Request], Awaitable[Response]]:
    guarded = {m: _guard(ctx, e) for m, e in methods.items()}
    if "GET" in guarded:
        guarded.setdefault("HEAD", guarded["GET"])

    async def dispatch(request: Request) -> Response:
        return await guarded[request.method](request)

    return dispatch


def _guard(ctx: AdminContext, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    @requires(endpoint.role)
    async def call(request: Request) -> Response:
        return await endpoint.handler(ctx, request)

    return call
