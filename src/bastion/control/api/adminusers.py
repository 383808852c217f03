"""``/admin-users`` and ``/admin-tokens`` (role admin): the control plane's own accounts.

A new user's one-time password and a new token are in the response that made them, and
nowhere else (the store keeps an argon2id hash and a keyed hash). Disabling or deleting a
user ends their sessions and tokens at once; nobody can disable or delete themselves, so the
control plane always keeps an admin who can manage it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion.control.accounts.roles import ROLE_NAMES, Role
from bastion.control.api import Endpoint
from bastion.control.api.common import ApiError, audited, body_of, iso, timestamp
from bastion.control.auth import Principal, principal_of
from bastion.control.context import AdminContext
from bastion.store import admins, websessions
from bastion.store.models import AdminToken, AdminUser

USER = {"type": "object", "required": ["name", "role", "disabled"], "properties": {
    "name": {"type": "string"}, "role": {"enum": list(ROLE_NAMES)}, "disabled": {"type": "boolean"},
    "totp": {"type": "boolean", "description": "Whether a TOTP second factor is enrolled."},
    "must_change_password": {"type": "boolean"}, "locked_until": timestamp("Locked out until (wrong passwords)."),
    "created_at": timestamp("When it was made.", nullable=False), "last_login_at": timestamp("Last sign-in.")}}
TOKEN = {"type": "object", "required": ["id", "name", "user", "role"], "properties": {
    "id": {"type": "string", "description": "The token's public id (in its `bsa_<id>_` prefix)."},
    "name": {"type": "string"}, "user": {"type": "string"}, "role": {"enum": list(ROLE_NAMES)},
    "state": {"enum": ["active", "expired", "revoked"]},
    "created_at": timestamp("When it was made.", nullable=False), "expires_at": timestamp("When it expires."),
    "revoked_at": timestamp("When it was revoked."), "last_used_at": timestamp("Last use (to the minute).")}}
_ROLE = {"enum": list(ROLE_NAMES)}
CREATE_USER = {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"^\S+$"},
    "role": {**_ROLE, "default": "admin"}}}
CREATE_TOKEN = {"type": "object", "required": ["user"], "additionalProperties": False, "properties": {
    "user": {"type": "string", "minLength": 1, "maxLength": 128},
    "name": {"type": "string", "maxLength": 128, "default": "token"},
    "role": {**_ROLE, "description": "At most the user's role (default: the user's)."},
    "expires_in": {"type": ["integer", "null"], "minimum": 60, "maximum": 3650 * 86400,
                   "description": "Seconds until it expires (null or absent: never)."}}}


def user_view(user: AdminUser) -> dict[str, Any]:
    return {"name": user.name, "role": user.role, "disabled": user.disabled, "totp": user.totp_secret is not None,
            "must_change_password": user.must_change_password, "locked_until": iso(user.locked_until),
            "created_at": iso(user.created_at), "last_login_at": iso(user.last_login_at)}


def token_view(row: AdminToken, user: str) -> dict[str, Any]:
    from bastion.store.models import utcnow

    state = "revoked" if row.revoked_at is not None else (
        "expired" if row.expires_at is not None and row.expires_at <= utcnow() else "active")
    return {"id": row.id, "name": row.name, "user": user, "role": row.role, "state": state,
            "created_at": iso(row.created_at), "expires_at": iso(row.expires_at), "revoked_at": iso(row.revoked_at),
            "last_used_at": iso(row.last_used_at)}


def _user(session: Session, name: str) -> AdminUser:
    user = admins.get(session, name)
    if user is None:
        raise ApiError(404, f"No admin user is named {name!r}.")
    return user


async def list_users(ctx: AdminContext, request: Request) -> Response:
    def fetch() -> dict[str, Any]:
        with ctx.store().read() as session:
            return {"items": [user_view(u) for u in admins.list_all(session)], "next_cursor": None}

    return JSONResponse(await ctx.call(fetch))


async def create_user(ctx: AdminContext, request: Request) -> Response:
    body, who = body_of(request), principal_of(request)

    def write() -> dict[str, Any]:
        with audited(ctx, who) as (session, note):
            user, password = admins.create(session, body["name"], Role.parse(body.get("role", "admin")))
            shown = user_view(user)
            note("admin_user.create", f"admin_user:{user.name}", after=shown)
            return {"user": shown, "password": password}

    return JSONResponse(await ctx.call(write), status_code=201)


def _not_yourself(user: AdminUser, who: Principal, verb: str) -> None:
    """Refuse to lock the caller out: another admin must do it (so the caller, an active admin,
    remains, and the control plane always keeps someone who can manage it)."""
    if user.id == who.user_id:
        raise ApiError(409, f"You cannot {verb} yourself; another admin can.")


async def disable_user(ctx: AdminContext, request: Request) -> Response:
    name, who = request.path_params["name"], principal_of(request)

    def write() -> dict[str, Any]:
        with audited(ctx, who) as (session, note):
            user = _user(session, name)
            before = user_view(user)
            _not_yourself(user, who, "disable")
            user.disabled = True
            websessions.close_all(session, "admin", user.id)  # its tokens stop resolving with it
            after = user_view(user)
            note("admin_user.disable", f"admin_user:{name}", before=before, after=after)
            return after

    return JSONResponse(await ctx.call(write))


async def reset_user_password(ctx: AdminContext, request: Request) -> Response:
    name, who = request.path_params["name"], principal_of(request)

    def write() -> dict[str, Any]:
        with audited(ctx, who) as (session, note):
            user = _user(session, name)
            before = user_view(user)
            password = admins.reset_password(session, name)
            websessions.close_all(session, "admin", user.id)
            after = user_view(user)
            note("admin_user.reset_password", f"admin_user:{name}", before=before, after=after)
            return {"user": after, "password": password}

    return JSONResponse(await ctx.call(write))


async def delete_user(ctx: AdminContext, request: Request) -> Response:
    name, who = request.path_params["name"], principal_of(request)

    def write() -> dict[str, Any]:
        with audited(ctx, who) as (session, note):
            user = _user(session, name)
            before = user_view(user)
            _not_yourself(user, who, "delete")
            websessions.close_all(session, "admin", user.id)
            for row in admins.list_tokens(session, user):  # explicit: SQLite's cascade is per connection
                session.delete(row)
            session.delete(user)
            note("admin_user.delete", f"admin_user:{name}", before=before)
            return {"deleted": name}

    return JSONResponse(await ctx.call(write))


async def list_tokens(ctx: AdminContext, request: Request) -> Response:
    def fetch() -> dict[str, Any]:
        with ctx.store().read() as session:
            names = {u.id: u.name for u in admins.list_all(session)}
            return {"items": [token_view(t, names.get(t.user_id, "?")) for t in admins.list_tokens(session)],
                    "next_cursor": None}

    return JSONResponse(await ctx.call(fetch))


async def create_token(ctx: AdminContext, request: Request) -> Response:
    body, who = body_of(request), principal_of(request)

    def write() -> dict[str, Any]:
        with audited(ctx, who) as (session, note):
            user = _user(session, body["user"])
            ttl = timedelta(seconds=body["expires_in"]) if body.get("expires_in") else None
            role = Role.parse(body["role"]) if "role" in body else None
            row, secret = admins.create_token(session, ctx.store().pepper, user, body.get("name", "token"), role, ttl)
            shown = token_view(row, user.name)
            note("admin_token.create", f"admin_token:{row.id}", after=shown)
            return {"token": shown, "secret": secret}

    return JSONResponse(await ctx.call(write), status_code=201)


async def revoke_token(ctx: AdminContext, request: Request) -> Response:
    token_id, who = request.path_params["token_id"], principal_of(request)

    def write() -> dict[str, Any]:
        with audited(ctx, who) as (session, note):
            row = session.get(AdminToken, token_id)
            if row is None:
                raise ApiError(404, f"No admin token has the id {token_id!r}.")
            owner = session.get(AdminUser, row.user_id)
            user = owner.name if owner is not None else "?"
            before = token_view(row, user)
            changed = row.revoked_at is None
            admins.revoke_token(session, token_id)
            after = token_view(row, user)
            if changed:
                note("admin_token.revoke", f"admin_token:{token_id}", before=before, after=after)
            return {"token": after, "changed": changed}

    return JSONResponse(await ctx.call(write))


_NO_USER = {404: "No admin user has that name."}
_LOCKOUT = "You cannot do this to yourself."
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/admin-users", list_users, Role.ADMIN, "List the admin users.", "listAdminUsers", "admin",
             response_schema={"type": "object", "properties": {"items": {"type": "array", "items": USER}}}),
    Endpoint("POST", "/admin-users", create_user, Role.ADMIN,
             "Create an admin user; its one-time password is in this response only.", "createAdminUser", "admin",
             request_schema=CREATE_USER,
             response_schema={"type": "object", "properties": {"user": USER, "password": {"type": "string"}}},
             responses={201: "Created: hand `password` over now; it is replaced at first sign-in.",
                        409: "A user of that name exists."}),
    Endpoint("POST", "/admin-users/{name}/disable", disable_user, Role.ADMIN,
             "Disable an admin user: their sessions end and their tokens stop working at once.", "disableAdminUser",
             "admin", response_schema=USER, responses={**_NO_USER, 409: _LOCKOUT}),
    Endpoint("POST", "/admin-users/{name}/reset-password", reset_user_password, Role.ADMIN,
             "Give an admin user a new one-time password (in this response only) and lift a lockout; their "
             "sessions end, their tokens and second factor stay.", "resetAdminPassword", "admin",
             response_schema={"type": "object", "properties": {"user": USER, "password": {"type": "string"}}},
             responses=_NO_USER),
    Endpoint("DELETE", "/admin-users/{name}", delete_user, Role.ADMIN,
             "Delete an admin user with their tokens and sessions.", "deleteAdminUser", "admin",
             response_schema={"type": "object", "properties": {"deleted": {"type": "string"}}},
             responses={**_NO_USER, 409: _LOCKOUT}),
    Endpoint("GET", "/admin-tokens", list_tokens, Role.ADMIN, "List admin tokens (ids, never the tokens).",
             "listAdminTokens", "admin",
             response_schema={"type": "object", "properties": {"items": {"type": "array", "items": TOKEN}}}),
    Endpoint("POST", "/admin-tokens", create_token, Role.ADMIN,
             "Create an admin token for a user (at most their role); the token is in this response only.",
             "createAdminToken", "admin", request_schema=CREATE_TOKEN,
             response_schema={"type": "object", "properties": {"token": TOKEN, "secret": {"type": "string"}}},
             responses={201: "Created: store `secret` now, it is never shown again.", **_NO_USER,
                        409: "The role is above the user's."}),
    Endpoint("POST", "/admin-tokens/{token_id}/revoke", revoke_token, Role.ADMIN,
             "Revoke an admin token: refused at once.", "revokeAdminToken", "admin",
             response_schema={"type": "object", "properties": {"token": TOKEN, "changed": {"type": "boolean"}}},
             responses={404: "No admin token has that id."}),
]
