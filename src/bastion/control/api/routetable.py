"""``/routes``: every route the gateway serves and its effective policy, as ``bastion check``
prints it: who may call it (authentication, scopes, roles), then each stage that runs on it
with its settings (secrets masked), from the configuration serving now."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion.config.effective import who_may_call
from bastion.config.loader import ResolvedRoute
from bastion.control.accounts.roles import Role
from bastion.control.api import Endpoint
from bastion.control.api.common import masked
from bastion.control.context import AdminContext

ROUTE = {
    "type": "object",
    "required": ["id", "service", "methods", "path", "auth", "stages", "policies"],
    "properties": {
        "id": {"type": "string"},
        "service": {"type": "string"},
        "methods": {"type": "array", "items": {"type": "string"}},
        "path": {"type": "string", "description": "The path; `prefix` true: and everything below it."},
        "prefix": {"type": "boolean"},
        "host": {"type": ["string", "null"]},
        "operation_id": {"type": ["string", "null"]},
        "public": {"type": "boolean"},
        "auth": {"type": "string", "description": "Who may call it: the authentication methods, scopes and "
                                                  "roles, `public`, or why it is never forwarded."},
        "stages": {"type": "array", "items": {"type": "string"}, "description": "The stages that run, in order."},
        "policies": {"type": "object", "description": "Each enabled stage's settings (secrets masked)."},
        "max_body_bytes": {"type": "integer"},
        "origin": {"type": "string", "description": "Where it is declared (file and line, or OpenAPI pointer)."},
        "builtin": {"type": "boolean", "description": "Answered by the gateway itself (the OAuth server's)."},
    },
}


def view(route: ResolvedRoute, *, builtin: bool = False) -> dict[str, Any]:
    return {
        "id": route.id, "service": route.service, "methods": sorted(route.methods - {"HEAD"}) or ["HEAD"],
        "path": route.path, "prefix": route.prefix, "host": route.host, "operation_id": route.operation_id,
        "public": route.public, "auth": "built-in" if builtin else who_may_call(route),
        "stages": [stage.name for stage in route.built],
        "policies": {spec.name: masked(config.model_dump(mode="json")) for spec, config in route.stages},
        "max_body_bytes": route.max_body_bytes, "origin": route.origin, "builtin": builtin,
    }


async def list_routes(ctx: AdminContext, request: Request) -> Response:
    loaded = ctx.config
    service = request.query_params.get("service")
    items = [view(r) for r in loaded.routes] + [view(r, builtin=True) for r in loaded.builtin_routes]
    if service is not None:
        items = [r for r in items if r["service"] == service]
    return JSONResponse({"items": items, "next_cursor": None})


ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/routes", list_routes, Role.VIEWER,
             "Every route with its effective policy (authentication, scopes, stages and their settings), from the "
             "configuration serving now.", "listRoutes", "routes",
             response_schema={"type": "object", "properties": {"items": {"type": "array", "items": ROUTE},
                                                               "next_cursor": {"type": "null"}}},
             query={"service": ({"type": "string"}, "Only this service's routes.")}),
]
