"""``/oauth-clients``: the built-in authorization server's clients: list, register, revoke.

A client's secret is in the response that registered it and nowhere else (the store keeps
its HMAC); a client registered with a JWKS (``private_key_jwt``) has no secret.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion.control.accounts.roles import Role
from bastion.control.api import Endpoint
from bastion.control.api.common import (
    PAGING,
    SCOPES,
    ApiError,
    audited,
    body_of,
    cursor_of,
    iso,
    limit_of,
    list_schema,
    page,
    timestamp,
)
from bastion.control.auth import principal_of
from bastion.control.context import AdminContext
from bastion.oauth.clients import credentials
from bastion.oauth.store import ClientExists
from bastion.store import consumers
from bastion.store.models import Consumer, OAuthClient, utcnow

CLIENT = {
    "type": "object",
    "required": ["client_id", "consumer", "auth_method", "scopes", "state", "created_at"],
    "properties": {
        "client_id": {"type": "string"},
        "consumer": {"type": "string", "description": "The consumer its tokens act for."},
        "auth_method": {"enum": ["client_secret", "private_key_jwt"]},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "state": {"enum": ["active", "revoked"]},
        "created_at": timestamp("When it was registered.", nullable=False),
        "revoked_at": timestamp("When it was revoked."),
    },
}
CREATE = {"type": "object", "required": ["client_id", "consumer"], "additionalProperties": False, "properties": {
    "client_id": {"type": "string", "pattern": r"^[A-Za-z0-9._~-]{1,64}$",
                  "description": "1 to 64 of A-Z a-z 0-9 . _ ~ -"},
    "consumer": {"type": "string", "minLength": 1, "maxLength": 128},
    "scopes": SCOPES,
    "jwks": {"type": "object", "description": "Its public keys (a JWK Set): private_key_jwt, no secret."},
}}
NEW_CLIENT = {"type": "object", "required": ["client", "secret"], "properties": {
    "client": CLIENT,
    "secret": {"type": ["string", "null"], "description": "The client secret, shown this once (null with a JWKS)."}}}


def view(row: OAuthClient, consumer: str) -> dict[str, Any]:
    return {"client_id": row.client_id, "consumer": consumer,
            "auth_method": "private_key_jwt" if row.jwks is not None else "client_secret",
            "scopes": list(row.scopes), "state": "revoked" if row.revoked_at is not None else "active",
            "created_at": iso(row.created_at), "revoked_at": iso(row.revoked_at)}


async def list_clients(ctx: AdminContext, request: Request) -> Response:
    limit, after = limit_of(request), cursor_of(request)

    def fetch() -> dict[str, Any]:
        query = (select(OAuthClient, Consumer.name).join(Consumer, Consumer.id == OAuthClient.consumer_id)
                 .order_by(OAuthClient.client_id).limit(limit + 1))
        if after is not None:
            query = query.where(OAuthClient.client_id > after)
        with ctx.store().read() as session:
            rows, cursor = page(list(session.execute(query).tuples()), limit, lambda r: r[0].client_id)
            return {"items": [view(row, name) for row, name in rows], "next_cursor": cursor}

    return JSONResponse(await ctx.call(fetch))


async def create_client(ctx: AdminContext, request: Request) -> Response:
    body, who = body_of(request), principal_of(request)
    client_id = body["client_id"]
    scopes = sorted(set(body.get("scopes", [])))

    def write() -> dict[str, Any]:
        store = ctx.store()
        secret_hash, jwks, secret = credentials(store.pepper, client_id, body.get("jwks"))
        with audited(ctx, who) as (session, note):
            owner = consumers.get(session, body["consumer"])
            if session.get(OAuthClient, client_id) is not None:
                raise ClientExists(client_id)
            row = OAuthClient(client_id=client_id, consumer_id=owner.id, secret_hash=secret_hash, jwks=jwks,
                              scopes=scopes)
            session.add(row)
            session.flush()
            shown = view(row, owner.name)
            note("oauth_client.create", f"oauth_client:{client_id}", after=shown)
            return {"client": shown, "secret": secret}

    return JSONResponse(await ctx.call(write), status_code=201)


async def revoke_client(ctx: AdminContext, request: Request) -> Response:
    client_id, who = request.path_params["client_id"], principal_of(request)

    def write() -> dict[str, Any]:
        with audited(ctx, who) as (session, note):
            row = session.get(OAuthClient, client_id)
            if row is None:
                raise ApiError(404, f"No OAuth client has the id {client_id!r}.")
            owner = session.get(Consumer, row.consumer_id)
            name = owner.name if owner is not None else "?"
            before = view(row, name)
            changed = row.revoked_at is None
            if changed:
                row.revoked_at = utcnow()
                note("oauth_client.revoke", f"oauth_client:{client_id}", before=before, after=view(row, name))
            return {"client": view(row, name), "changed": changed}

    return JSONResponse(await ctx.call(write))


ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/oauth-clients", list_clients, Role.VIEWER, "List OAuth clients (never their secrets).",
             "listOAuthClients", "oauth", response_schema=list_schema(CLIENT), query=PAGING),
    Endpoint("POST", "/oauth-clients", create_client, Role.OPERATOR,
             "Register an OAuth client (client credentials grant); its secret is in this response only.",
             "createOAuthClient", "oauth", request_schema=CREATE, response_schema=NEW_CLIENT,
             responses={201: "Registered: store `secret` now, it is never shown again.",
                        404: "No consumer has that name.", 409: "A client has that id already."}),
    Endpoint("POST", "/oauth-clients/{client_id}/revoke", revoke_client, Role.OPERATOR,
             "Revoke an OAuth client: no more tokens, and its tokens introspect as inactive.", "revokeOAuthClient",
             "oauth", response_schema={"type": "object", "properties": {"client": CLIENT,
                                                                        "changed": {"type": "boolean"}}},
             responses={404: "No OAuth client has that id."}),
]
