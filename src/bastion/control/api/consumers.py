"""``/consumers``: list, show, create, update and delete the consumers kept in the store.

Consumers declared in the configuration file (``consumers:``) are listed with
``"source": "config"`` and are read-only here: a write answers 409 naming the file, which
is their source of truth (no silent divergence between the file and the store).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion.config.model import CONSUMER_NAME
from bastion.control.accounts.roles import Role
from bastion.control.api import Endpoint
from bastion.control.api.common import PAGING, audited, body_of, cursor_of, iso, limit_of, list_schema, page, timestamp
from bastion.control.auth import Principal, principal_of
from bastion.control.context import AdminContext
from bastion.store import consumers
from bastion.store.models import Consumer

_NAME = {"type": "string", "pattern": CONSUMER_NAME, "description": "Letters, digits and _ . @ -, at most 128."}
_ROLES = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 64}, "maxItems": 64,
          "description": "Roles it holds (routes may require them)."}
_PLAN = {"type": ["string", "null"], "minLength": 1, "maxLength": 64, "description": "Its plan (limits, quotas)."}
_METADATA = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
             "maxProperties": 64, "description": "Anything about it (key -> scalar)."}

CONSUMER = {
    "type": "object",
    "required": ["name", "roles", "plan", "metadata", "source", "created_at", "updated_at"],
    "properties": {
        "name": _NAME, "roles": _ROLES, "plan": _PLAN, "metadata": {"type": "object"},
        "source": {"enum": ["config", "store"],
                   "description": "config: declared in the configuration file (read-only here)."},
        "ip_allow": {"type": "array", "items": {"type": "string"}},
        "ip_deny": {"type": "array", "items": {"type": "string"}},
        "created_at": timestamp("When it was made.", nullable=False),
        "updated_at": timestamp("When it last changed.", nullable=False),
    },
}
CREATE = {"type": "object", "required": ["name"], "additionalProperties": False,
          "properties": {"name": _NAME, "roles": _ROLES, "plan": _PLAN, "metadata": _METADATA}}
UPDATE = {"type": "object", "additionalProperties": False, "minProperties": 1,
          "properties": {"roles": _ROLES, "plan": _PLAN, "metadata": _METADATA}}


def view(consumer: Consumer) -> dict[str, Any]:
    """A consumer as the API shows it (what the admin audit trail records too)."""
    return {"name": consumer.name, "roles": list(consumer.roles), "plan": consumer.plan,
            "metadata": dict(consumer.meta), "source": "config" if consumer.declared else "store",
            "ip_allow": list(consumer.ip_allow), "ip_deny": list(consumer.ip_deny),
            "created_at": iso(consumer.created_at), "updated_at": iso(consumer.updated_at)}


async def list_consumers(ctx: AdminContext, request: Request) -> Response:
    limit, after = limit_of(request), cursor_of(request)

    def fetch() -> dict[str, Any]:
        query = select(Consumer).order_by(Consumer.name).limit(limit + 1)
        if after is not None:
            query = query.where(Consumer.name > after)
        with ctx.store().read() as session:
            found, cursor = page(list(session.execute(query).scalars()), limit, lambda c: c.name)
            return {"items": [view(c) for c in found], "next_cursor": cursor}

    return JSONResponse(await ctx.call(fetch))


async def get_consumer(ctx: AdminContext, request: Request) -> Response:
    name = request.path_params["name"]

    def fetch() -> dict[str, Any]:
        with ctx.store().read() as session:
            return view(consumers.get(session, name))

    return JSONResponse(await ctx.call(fetch))


async def create_consumer(ctx: AdminContext, request: Request) -> Response:
    body, who = body_of(request), principal_of(request)

    def write() -> dict[str, Any]:
        with audited(ctx, who) as (session, note):
            made = view(consumers.create(session, body["name"], roles=body.get("roles", ()), plan=body.get("plan"),
                                         metadata=body.get("metadata")))
            note("consumer.create", f"consumer:{body['name']}", after=made)
            return made

    return JSONResponse(await ctx.call(write), status_code=201)


async def update_consumer(ctx: AdminContext, request: Request) -> Response:
    name, body, who = request.path_params["name"], body_of(request), principal_of(request)
    return JSONResponse(await ctx.call(_update, ctx, who, name, body))


def _update(ctx: AdminContext, who: Principal, name: str, body: dict[str, Any]) -> dict[str, Any]:
    with audited(ctx, who) as (session, note):
        before = view(consumers.get(session, name))
        after = view(consumers.update(session, name, roles=body.get("roles"), plan=body.get("plan"),
                                      clear_plan="plan" in body and body["plan"] is None,
                                      metadata=body.get("metadata")))
        note("consumer.update", f"consumer:{name}", before=before, after=after)
        return after


async def delete_consumer(ctx: AdminContext, request: Request) -> Response:
    name, who = request.path_params["name"], principal_of(request)

    def write() -> dict[str, Any]:
        with audited(ctx, who) as (session, note):
            before = view(consumers.get(session, name))
            keys = consumers.delete_by_name(session, name)
            note("consumer.delete", f"consumer:{name}", before={**before, "api_keys": keys})
            return {"deleted": name, "api_keys_deleted": keys}

    return JSONResponse(await ctx.call(write))


_DECLARED = "The consumer is declared in the configuration file (read-only here: change it there)."
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/consumers", list_consumers, Role.VIEWER, "List consumers, by name.", "listConsumers",
             "consumers", response_schema=list_schema(CONSUMER), query=PAGING),
    Endpoint("POST", "/consumers", create_consumer, Role.OPERATOR, "Create a consumer in the store.",
             "createConsumer", "consumers", request_schema=CREATE, response_schema=CONSUMER,
             responses={201: "Created.", 409: "A consumer of that name exists (in the store or the file)."}),
    Endpoint("GET", "/consumers/{name}", get_consumer, Role.VIEWER, "Show a consumer.", "getConsumer",
             "consumers", response_schema=CONSUMER, responses={404: "No consumer has that name."}),
    Endpoint("PATCH", "/consumers/{name}", update_consumer, Role.OPERATOR,
             "Change a store consumer's roles, plan or metadata.", "updateConsumer", "consumers",
             request_schema=UPDATE, response_schema=CONSUMER,
             responses={404: "No consumer has that name.", 409: _DECLARED}),
    Endpoint("DELETE", "/consumers/{name}", delete_consumer, Role.OPERATOR,
             "Delete a store consumer and its API keys (gateways refuse them within about a second).",
             "deleteConsumer", "consumers",
             response_schema={"type": "object", "properties": {"deleted": {"type": "string"},
                                                               "api_keys_deleted": {"type": "integer"}}},
             responses={404: "No consumer has that name.", 409: _DECLARED}),
]
