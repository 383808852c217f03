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

import jsonschema_rs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bastion.control.accounts.roles import Role
from bastion.control.api.common import ApiError, read_json
from bastion.control.auth import requires
from bastion.control.context import AdminContext
from bastion.control.problem import problem
from bastion.oauth.clients import BadClient
from bastion.oauth.store import ClientExists
from bastion.store.admins import UnknownAdmin
from bastion.store.errors import (
    ConsumerExists,
    DeclaredConsumer,
    StoreError,
    StoreUnavailable,
    UnknownCertificate,
    UnknownConsumer,
    UnknownKey,
)
from bastion.store.portal import UnknownAccount

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


#: The resource modules, each a list of endpoints (filled in at the end of this module, whose
#: :class:`Endpoint` they import).
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
    mounted.append(Route(OPENAPI_PATH, _dispatch(ctx, {"GET": OPENAPI_ENDPOINT}), methods=["GET"]))
    return mounted


def _dispatch(ctx: AdminContext, methods: dict[str, Endpoint]) -> Callable[[Request], Awaitable[Response]]:
    guarded = {m: _guard(ctx, e) for m, e in methods.items()}
    if "GET" in guarded:
        guarded.setdefault("HEAD", guarded["GET"])

    async def dispatch(request: Request) -> Response:
        return await guarded[request.method](request)

    return dispatch


def _guard(ctx: AdminContext, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint behind its role, its query parameters and request body checked against
    its declaration first, its failures answered as problem+json."""
    schema = endpoint.request_schema
    validator = jsonschema_rs.validator_for(schema) if schema is not None else None
    accepted = frozenset(endpoint.query)

    @requires(endpoint.role)
    async def call(request: Request) -> Response:
        try:
            unknown = sorted(set(request.query_params) - accepted)
            if unknown:
                allowed = ", ".join(sorted(accepted)) or "none"
                raise ApiError(400, f"Unknown query parameter(s): {', '.join(unknown)} "
                                    f"(this endpoint takes {allowed}).")
            if validator is not None:
                body = await read_json(request)
                errors = [f"{'/' + '/'.join(str(p) for p in e.instance_path)}: {e.message}"
                          for e in validator.iter_errors(body)]
                if errors:
                    raise ApiError(422, "The body does not match this endpoint's schema (see errors).",
                                   errors=errors[:20])
                request.state.body = body
            return await endpoint.handler(ctx, request)
        except ApiError as exc:
            return problem(exc.status, exc.detail, **exc.extra)
        except (StoreError, BadClient, ClientExists) as exc:
            return _store_problem(ctx, exc)

    return call


def _store_problem(ctx: AdminContext, exc: Exception) -> JSONResponse:
    """A store refusal as problem+json: what is missing is 404, what conflicts (a name taken,
    a consumer the configuration file declares) is 409, a store that cannot be reached is 503."""
    if isinstance(exc, UnknownConsumer | UnknownKey | UnknownAdmin | UnknownAccount | UnknownCertificate):
        return problem(404, str(exc))
    if isinstance(exc, DeclaredConsumer):
        # The file is the source of truth: say which one, and that the change belongs there.
        return problem(409, f"The consumer {exc.name!r} is declared in {ctx.config.path} (consumers:); change it "
                            "there: the file is the source of truth, the store only mirrors it.")
    if isinstance(exc, StoreUnavailable):
        return problem(503, str(exc))
    if isinstance(exc, BadClient):
        return problem(422, str(exc))
    if isinstance(exc, ConsumerExists | ClientExists):
        return problem(409, str(exc))
    return problem(409, str(exc))


async def _openapi(ctx: AdminContext, request: Request) -> Response:
    from bastion.control.api.openapi import document

    return JSONResponse(document())


#: The OpenAPI document's own path (outside :data:`PREFIX`, where tools look for it).
OPENAPI_PATH = "/openapi.json"
#: ``/openapi.json`` needs a viewer like every other read: the document is the same for every
#: Bastion of this version, but nothing but health, readiness, version and metrics is open.
OPENAPI_ENDPOINT = Endpoint(
    "GET", OPENAPI_PATH, _openapi, Role.VIEWER, "This document: the admin API in OpenAPI 3.1.",
    "getOpenApi", "meta", response_schema={"type": "object"})


# The resources, imported last: each imports Endpoint from here.
# (``/routes`` lives in routetable: a submodule named ``routes`` would hide :func:`routes`.)
from bastion.control.api import (  # noqa: E402
    adminusers,
    alerts,
    auditlog,
    blocks,
    certificates,
    configfile,
    consumers,
    keys,
    oauthclients,
    portalaccounts,
    routetable,
    summary,
)

MODULES.extend([consumers.ENDPOINTS, keys.ENDPOINTS, oauthclients.ENDPOINTS, routetable.ENDPOINTS,
                alerts.ENDPOINTS, blocks.ENDPOINTS, auditlog.ENDPOINTS, summary.ENDPOINTS, adminusers.ENDPOINTS,
                configfile.ENDPOINTS, portalaccounts.ENDPOINTS,
                certificates.ENDPOINTS])
