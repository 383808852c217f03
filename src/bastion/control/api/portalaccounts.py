"""``/portal-accounts/{login}/reset-link`` (role operator): a developer who forgot their portal
password gets a one-time link to choose a new one.

The link is in the response that makes it and nowhere else (the store keeps its keyed hash);
it works once, until it expires, and a newer link replaces it. The account's current password
keeps working until the new one is set. Bastion sends no mail itself: hand the link over.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion.control.accounts.roles import Role
from bastion.control.api import Endpoint
from bastion.control.api.common import audited, body_of, iso, timestamp
from bastion.control.auth import principal_of
from bastion.control.context import AdminContext
from bastion.store import portal as accounts

#: What a link lasts unless the request says otherwise.
DEFAULT_TTL = timedelta(hours=24)
RESET = {"type": "object", "additionalProperties": False, "properties": {
    "expires_in": {"type": "integer", "minimum": 60, "maximum": int(accounts.MAX_RESET_TTL.total_seconds()),
                   "default": int(DEFAULT_TTL.total_seconds()), "description": "Seconds the link works."}}}
LINK = {"type": "object", "required": ["login", "consumer", "link", "expires_at"], "properties": {
    "login": {"type": "string"}, "consumer": {"type": "string"},
    "link": {"type": "string", "description": "The one-time link, on the address this request was made to."},
    "expires_at": timestamp("When the link stops working.", nullable=False),
    "portal_enabled": {"type": "boolean", "description": "Whether admin.portal.enabled is on (the link works then)."}}}


async def reset_link(ctx: AdminContext, request: Request) -> Response:
    login, who, body = request.path_params["login"], principal_of(request), body_of(request)
    ttl = timedelta(seconds=int(body.get("expires_in", DEFAULT_TTL.total_seconds())))
    # The link is on the address the caller reached this listener at.
    base = str(request.base_url).rstrip("/")

    def write() -> dict[str, Any]:
        with audited(ctx, who) as (session, note):
            account, token = accounts.reset_link(session, ctx.store().pepper, login, ttl)
            consumer = accounts.consumer_of(session, account).name
            expires = iso(account.invite_expires_at)
            note("portal.reset_link", f"portal:{account.login}", after={"consumer": consumer, "expires": expires})
            return {"login": account.login, "consumer": consumer, "link": f"{base}/portal/reset/{token}",
                    "expires_at": expires, "portal_enabled": ctx.settings.portal.enabled}

    return JSONResponse(await ctx.call(write), status_code=201)


ENDPOINTS: list[Endpoint] = [
    Endpoint("POST", "/portal-accounts/{login}/reset-link", reset_link, Role.OPERATOR,
             "Issue a one-time link for a portal developer to choose a new password; the link is in this "
             "response only.", "resetPortalPassword", "portal", request_schema=RESET, response_schema=LINK,
             responses={201: "Issued: hand `link` over now; it works once, until `expires_at`.",
                        404: "No portal account has that login.", 409: "The account is disabled."}),
]
