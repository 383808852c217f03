"""The self-service developer portal, under ``/portal`` on the admin listener
(``admin.portal.enabled``).

An API consumer's developers sign in (invitation link, or registration where
``admin.portal.registration`` allows it; password and, once enrolled, TOTP), then, without
an operator: create, rotate and revoke their consumer's keys within the scopes its plan
allows, see its traffic and what is left of its quotas, and read the security guide of the
operations it can call. Nothing here reaches another consumer's keys, and every change is in
the admin audit trail as ``portal:<login>``.

While the portal is disabled every path under ``/portal`` answers 404 (checked per request,
so a reload turns it on or off).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.control.context import AdminContext
from bastion.control.portal import keys, overview, signin
from bastion.control.portal.web import BASE, message, signed_in

Endpoint = Callable[[Request], Awaitable[Response]]
_STATIC = Path(__file__).parent / "static"
#: The portal's only files besides its pages, read once.
_FILES = {"portal.css": ((_STATIC / "portal.css").read_bytes(), "text/css; charset=utf-8"),
          "favicon.svg": ((_STATIC / "favicon.svg").read_bytes(), "image/svg+xml")}


def _when_enabled(ctx: AdminContext, endpoint: Endpoint) -> Endpoint:
    async def gate(request: Request) -> Response:
        if not ctx.settings.portal.enabled:
            return message(request, 404, "Not found", "The developer portal is not enabled on this server.")
        return await endpoint(request)

    return gate


def _public(ctx: AdminContext, handler: Callable[[AdminContext, Request], Awaitable[Response]]) -> Endpoint:
    async def call(request: Request) -> Response:
        return await handler(ctx, request)

    return call


def _static(name: str) -> Endpoint:
    body, media_type = _FILES[name]

    async def serve(_: Request) -> Response:
        return Response(body, media_type=media_type)

    return serve


def routes(ctx: AdminContext) -> list[BaseRoute]:
    """The portal's pages and forms."""
    pages: list[tuple[str, Endpoint, list[str]]] = [
        ("/", signed_in(ctx, overview.home), ["GET"]),
        ("/login", _public(ctx, signin.login_page), ["GET", "POST"]),
        ("/totp", _public(ctx, signin.totp_page), ["GET", "POST"]),
        ("/logout", signed_in(ctx, signin.logout), ["POST"]),
        ("/invite/{token}", _public(ctx, signin.invite_page), ["GET", "POST"]),
        ("/reset/{token}", _public(ctx, signin.reset_page), ["GET", "POST"]),
        ("/register", _public(ctx, signin.register_page), ["GET", "POST"]),
        ("/account", signed_in(ctx, signin.account_page), ["GET", "POST"]),
        ("/account/password", signed_in(ctx, signin.password_page), ["POST"]),
        ("/keys", signed_in(ctx, keys.list_page), ["GET"]),
        ("/keys/new", signed_in(ctx, keys.create), ["POST"]),
        ("/keys/{key_id}/rotate", signed_in(ctx, keys.rotate), ["POST"]),
        ("/keys/{key_id}/revoke", signed_in(ctx, keys.revoke), ["POST"]),
        ("/docs", signed_in(ctx, overview.docs), ["GET"]),
        *((f"/static/{name}", _static(name), ["GET"]) for name in _FILES),
    ]
    mounted: list[BaseRoute] = [Route(BASE, _when_enabled(ctx, signed_in(ctx, overview.home)), methods=["GET"])]
    mounted += [Route(BASE + path, _when_enabled(ctx, endpoint), methods=methods) for path, endpoint, methods in pages]
    return mounted
