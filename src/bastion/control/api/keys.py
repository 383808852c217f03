"""``/keys``: consumers' API keys: list, create, revoke, rotate.

A key is in the response of the ``create`` or ``rotate`` that made it (``secret``), and
nowhere else, ever: the store keeps only its keyed hash, lists show its id and prefix, and
the admin audit trail records the key's id. Every change bumps the store's generation, so
gateways honour it within about a second.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
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
from bastion.stages.auth import keyformat
from bastion.store import consumers, keys
from bastion.store.models import ApiKey, Consumer, utcnow

#: Ten years: as `bastion keys` allows.
_MAX_SECONDS = 3650 * 86400
_LIFETIME = {"type": ["integer", "null"], "minimum": 1, "maximum": _MAX_SECONDS,
             "description": "Seconds until it expires (null or absent: never)."}

KEY = {
    "type": "object",
    "required": ["id", "prefix", "consumer", "scopes", "state", "created_at"],
    "properties": {
        "id": {"type": "string", "description": "The key's public id (in its `bst_<id>` prefix)."},
        "prefix": {"type": "string", "description": "What the key starts with, to recognise it."},
        "consumer": {"type": "string"},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "state": {"enum": ["active", "rotated", "expired", "revoked"]},
        "replaced_by": {"type": ["string", "null"], "description": "The key a rotation made to replace it."},
        "created_at": timestamp("When it was made.", nullable=False),
        "expires_at": timestamp("When it stops working (null: never)."),
        "revoked_at": timestamp("When it was revoked."),
        "last_used_at": timestamp("When a gateway last accepted it (to the minute)."),
    },
}
NEW_KEY = {"type": "object", "required": ["key", "secret"],
           "properties": {"key": KEY, "secret": {"type": "string", "description": "The key: shown this once."}}}
CREATE = {"type": "object", "required": ["consumer"], "additionalProperties": False,
          "properties": {"consumer": {"type": "string", "minLength": 1, "maxLength": 128}, "scopes": SCOPES,
                         "expires_in": _LIFETIME}}
ROTATE = {"type": "object", "additionalProperties": False, "properties": {
    "overlap": {"type": "integer", "minimum": 0, "maximum": _MAX_SECONDS, "default": 86400,
                "description": "Seconds the old key keeps working (default one day)."},
    "expires_in": {**_LIFETIME, "description": "Seconds until the new key expires (absent: as long as the old "
                                               "one's lifetime; null: never)."}}}


def _state(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "rotated" if key.replaced_by is not None else "active"


def view(key: ApiKey, consumer: str, now: datetime | None = None) -> dict[str, Any]:
    """A key as the API (and the admin audit trail) shows it: never the key itself."""
    return {"id": key.id, "prefix": key.prefix, "consumer": consumer, "scopes": list(key.scopes),
            "state": _state(key, now or utcnow()), "replaced_by": key.replaced_by,
            "created_at": iso(key.created_at), "expires_at": iso(key.expires_at),
            "revoked_at": iso(key.revoked_at), "last_used_at": iso(key.last_used_at)}


def _key_id(given: str) -> str:
    """The key's id from its id or its shown prefix (``bst_<id>…``)."""
    return keyformat.key_id(given) if given.startswith(keyformat.PREFIX) else given


async def list_keys(ctx: AdminContext, request: Request) -> Response:
    limit, after = limit_of(request), cursor_of(request)
    owner = request.query_params.get("consumer")

    def fetch() -> dict[str, Any]:
        now = utcnow()
        query = (select(ApiKey, Consumer.name).join(Consumer, ApiKey.consumer_id == Consumer.id)
                 .order_by(ApiKey.created_at, ApiKey.id).limit(limit + 1))
        with ctx.store().read() as session:
            if owner is not None:
                query = query.where(ApiKey.consumer_id == consumers.get(session, owner).id)
            if after is not None:
                when, _, key_id = after.partition(" ")
                try:
                    start = datetime.fromisoformat(when)
                except ValueError:
                    raise ApiError(400, "The cursor is not one this API gave; start again without it.") from None
                later = and_(ApiKey.created_at == start, ApiKey.id > key_id)
                query = query.where(or_(ApiKey.created_at > start, later))
            rows, cursor = page(list(session.execute(query).tuples()), limit,
                                lambda r: f"{r[0].created_at.isoformat()} {r[0].id}")
            return {"items": [view(k, name, now) for k, name in rows], "next_cursor": cursor}

    return JSONResponse(await ctx.call(fetch))


async def create_key(ctx: AdminContext, request: Request) -> Response:
    body, who = body_of(request), principal_of(request)
    lifetime = body.get("expires_in")

    def write() -> dict[str, Any]:
        with audited(ctx, who) as (session, note):
            expires = utcnow() + timedelta(seconds=lifetime) if lifetime else None
            new = keys.create(session, ctx.store().pepper, body["consumer"], body.get("scopes", []), expires)
            shown = view(new.record, body["consumer"])
            note("key.create", f"key:{new.record.id}", after=shown)
            return {"key": shown, "secret": new.secret}

    return JSONResponse(await ctx.call(write), status_code=201)


async def revoke_key(ctx: AdminContext, request: Request) -> Response:
    key_id, who = _key_id(request.path_params["key_id"]), principal_of(request)

    def write() -> dict[str, Any]:
        with audited(ctx, who) as (session, note):
            key = keys.get(session, key_id)
            owner = _owner(session, key)
            before = view(key, owner)
            changed = keys.revoke(session, key_id)
            after = view(key, owner)
            if changed:
                note("key.revoke", f"key:{key_id}", before=before, after=after)
            return {"key": after, "changed": changed}

    return JSONResponse(await ctx.call(write))


async def rotate_key(ctx: AdminContext, request: Request) -> Response:
    key_id, who = _key_id(request.path_params["key_id"]), principal_of(request)
    body = body_of(request)
    overlap = timedelta(seconds=body.get("overlap", 86400))

    def write() -> dict[str, Any]:
        with audited(ctx, who) as (session, note):
            old = keys.get(session, key_id)
            owner = _owner(session, old)
            before = view(old, owner)
            if "expires_in" in body:
                lifetime = timedelta(seconds=body["expires_in"]) if body["expires_in"] else None
            else:  # as long a lifetime as the key it replaces, as `bastion keys rotate` does
                lifetime = old.expires_at - old.created_at if old.expires_at is not None else None
            new = keys.rotate(session, ctx.store().pepper, key_id, overlap, utcnow() + lifetime if lifetime else None)
            shown = view(new.record, owner)
            note("key.rotate", f"key:{key_id}", before=before, after={"old": view(old, owner), "new": shown})
            return {"key": shown, "secret": new.secret, "old_key": view(old, owner)}

    return JSONResponse(await ctx.call(write), status_code=201)


def _owner(session: Any, key: ApiKey) -> str:
    consumer = session.get(Consumer, key.consumer_id)
    return consumer.name if consumer is not None else "?"


_KEY_GONE = {404: "No API key has that id."}
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/keys", list_keys, Role.VIEWER, "List API keys (ids and prefixes, never the keys), oldest first.",
             "listKeys", "keys", response_schema=list_schema(KEY),
             query={**PAGING, "consumer": ({"type": "string"}, "Only this consumer's keys.")},
             responses={404: "No consumer has that name."}),
    Endpoint("POST", "/keys", create_key, Role.OPERATOR,
             "Create an API key; the key is in this response only (`secret`).", "createKey", "keys",
             request_schema=CREATE, response_schema=NEW_KEY,
             responses={201: "Created: store `secret` now, it is never shown again.",
                        404: "No consumer has that name."}),
    Endpoint("POST", "/keys/{key_id}/revoke", revoke_key, Role.OPERATOR,
             "Revoke an API key: gateways refuse it within about a second.", "revokeKey", "keys",
             response_schema={"type": "object", "properties": {"key": KEY, "changed": {"type": "boolean"}}},
             responses=_KEY_GONE),
    Endpoint("POST", "/keys/{key_id}/rotate", rotate_key, Role.OPERATOR,
             "Replace an API key by a new one (same consumer and scopes); the old one works for `overlap` "
             "seconds more. The new key is in this response only.", "rotateKey", "keys",
             request_schema=ROTATE, response_schema=NEW_KEY,
             responses={201: "Rotated: store `secret` now, it is never shown again.", **_KEY_GONE,
                        409: "The key is revoked, expired or rotated already."}),
]
