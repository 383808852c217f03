"""Who is calling the control plane, and what they may do.

Two ways in: an admin API token (``Authorization: Bearer bsa_…``, for scripts and the CLI)
or a dashboard session cookie (set after password and, where enrolled or required, TOTP).
Every endpoint but health, readiness, version (and metrics, unless configured otherwise)
is wrapped by :func:`requires` with the least role it needs; requests made with a session
cookie must also carry the session's CSRF token on every unsafe method (header
``X-CSRF-Token`` or form field ``csrf_token``), since a browser attaches cookies to
requests other sites make it send.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bastion.control.accounts.roles import Role
from bastion.control.context import AdminContext
from bastion.control.problem import problem
from bastion.store import admins, websessions
from bastion.store.models import AdminToken, AdminUser, utcnow

Endpoint = Callable[[Request], Awaitable[Response]]
#: How pages answer a refusal to a browser: (request, status, title, reason) -> an HTML page.
HtmlRefusal = Callable[[Request, int, str, str], Response]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
#: A token's last use is written at most this often (not on every call).
_LAST_USED_EVERY = timedelta(minutes=1)


def session_cookie_name(ctx: AdminContext, kind: str = "admin") -> str:
    """``__Host-`` cookies (Secure, host-only, path /) over TLS; on loopback HTTP a browser
    would drop a Secure cookie, so the plain name is used there."""
    base = "bastion_session" if kind == "admin" else "bastion_portal"
    return f"__Host-{base}" if ctx.tls else base


def set_session_cookie(ctx: AdminContext, response: Response, value: str, kind: str = "admin") -> None:
    response.set_cookie(session_cookie_name(ctx, kind), value, max_age=ctx.settings.sessions.ttl, path="/",
                        secure=ctx.tls, httponly=True, samesite="strict")


def clear_session_cookie(ctx: AdminContext, response: Response, kind: str = "admin") -> None:
    response.delete_cookie(session_cookie_name(ctx, kind), path="/", secure=ctx.tls, httponly=True, samesite="strict")


@dataclass(frozen=True)
class Principal:
    """An authenticated admin: who, with which role, by which means, from where."""

    name: str
    user_id: str
    role: Role
    via: Literal["token", "session"]
    source: str
    #: The session's CSRF token (sessions only).
    csrf: str | None = None
    #: The token's id (tokens only), for the audit trail.
    token_id: str | None = None

    def audit(self) -> dict[str, str]:
        """The ``actor``/``via``/``source`` fields of an admin audit entry."""
        actor = self.name if self.token_id is None else f"{self.name} (token {self.token_id})"
        return {"actor": actor, "via": self.via, "source": self.source}


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def authenticate(ctx: AdminContext, request: Request) -> Principal | None:
    """The caller, if a live token or a fully signed-in dashboard session says who it is."""
    source = client_address(request)
    token = _bearer(request)
    if token is not None:
        return await ctx.call(_by_token, ctx, token, source)
    cookie = request.cookies.get(session_cookie_name(ctx))
    if cookie:
        return await ctx.call(_by_session, ctx, cookie, source)
    return None


def _by_token(ctx: AdminContext, token: str, source: str) -> Principal | None:
    store = ctx.store()
    now = utcnow()
    with store.read() as session:
        found = admins.resolve_token(session, store.pepper, token, now)
        if found is None:
            return None
        principal = Principal(found.user.name, found.user.id, found.role, "token", source, token_id=found.token.id)
        stale = found.token.last_used_at is None or found.token.last_used_at + _LAST_USED_EVERY <= now
    if stale:
        with store.write() as session:
            row = session.get(AdminToken, principal.token_id)
            if row is not None:
                row.last_used_at = now
    return principal


def _by_session(ctx: AdminContext, cookie: str, source: str) -> Principal | None:
    store = ctx.store()
    with store.write() as session:
        row = websessions.find(session, store.pepper, "admin", cookie, utcnow(), ctx.session_policy)
        if row is None or not row.mfa:
            return None
        user = session.get(AdminUser, row.subject_id)
        if user is None or user.disabled:
            return None
        return Principal(user.name, user.id, Role.parse(user.role), "session", source, csrf=row.csrf)


async def csrf_ok(request: Request, expected: str | None) -> bool:
    """Whether an unsafe request carries the session's CSRF token (header or form field)."""
    if expected is None:
        return False
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())


def wants_html(request: Request) -> bool:
    """Whether the caller is a browser navigating (``Accept`` names HTML) rather than a script."""
    return "text/html" in request.headers.get("accept", "")


def requires(role: Role, *, login_page: str | None = None,
             html_refusal: HtmlRefusal | None = None) -> Callable[[Endpoint], Endpoint]:
    """Wrap an endpoint: 401 without credentials (or a redirect to ``login_page`` for pages),
    403 when the role is too low or a session's unsafe request lacks its CSRF token. The
    endpoint finds the caller in ``request.state.principal``.

    Refusals are problem+json, except to a browser (``Accept: text/html``) of an endpoint
    given ``html_refusal`` (the dashboard's pages): it gets a page saying why, since a
    browser shows JSON as a wall of text."""

    def refuse(request: Request, status: int, title: str, detail: str,
               headers: dict[str, str] | None = None) -> Response:
        if html_refusal is not None and wants_html(request):
            return html_refusal(request, status, title, detail)
        return problem(status, detail, headers=headers)

    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            ctx: AdminContext = request.app.state.ctx
            principal = await authenticate(ctx, request)
            if principal is None:
                if login_page is not None and request.method in SAFE_METHODS:
                    return RedirectResponse(login_page, status_code=303)
                if request.cookies.get(session_cookie_name(ctx)):
                    return refuse(request, 401, "Session expired",
                                  "Your session has expired or was closed: sign in again, then retry.",
                                  headers={"WWW-Authenticate": 'Bearer realm="bastion-admin"'})
                return refuse(request, 401, "Sign-in required",
                              "Sign in, or send an admin token: Authorization: Bearer bsa_...",
                              headers={"WWW-Authenticate": 'Bearer realm="bastion-admin"'})
            if not principal.role.allows(role):
                return refuse(request, 403, "Not allowed",
                              f"This needs the role {role.label}; {principal.name} is {principal.role.label}.")
            unsafe = principal.via == "session" and request.method not in SAFE_METHODS
            if unsafe and not await csrf_ok(request, principal.csrf):
                return refuse(request, 403, "Form refused",
                              "The request lacks this session's CSRF token (X-CSRF-Token or csrf_token): "
                              "reload the page and try again.")
            request.state.principal = principal
            return await endpoint(request)

        return guarded

    return wrap


def principal_of(request: Request) -> Principal:
    """The caller :func:`requires` let in."""
    value: Principal = request.state.principal
    return value
