"""What every portal page shares: the templates, the strict Content-Security-Policy, the
signed-in developer, and CSRF tokens on every form.

Pages are server-rendered (Jinja2, autoescaped) and load nothing but the portal's own
stylesheet: the policy allows no script, no inline style, no other origin, no framing.

Forms shown before sign-in (sign-in, invitation, registration) carry a token that must equal
a ``SameSite=Strict``, ``HttpOnly`` cookie set with the form (double submit); forms of a
signed-in developer carry the session's own CSRF token.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bastion.control.accounts import tokens
from bastion.control.auth import client_address, session_cookie_name
from bastion.control.context import AdminContext
from bastion.store import portal as accounts
from bastion.store import websessions
from bastion.store.models import utcnow

BASE = "/portal"
_HERE = Path(__file__).parent
#: No script, no inline style, nothing from elsewhere; forms post only here; never framed.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
CSRF_FIELD = "csrf_token"
_ENV = Environment(loader=FileSystemLoader(_HERE / "templates"), autoescape=select_autoescape(default=True),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
#: Forms are small; anything larger is not a portal form.
MAX_FORM_BYTES = 16 * 1024


@dataclass(frozen=True)
class Developer:
    """A signed-in portal account and the consumer whose keys it manages."""

    account_id: str
    login: str
    consumer_id: str
    consumer: str
    plan: str | None
    roles: tuple[str, ...]
    csrf: str
    source: str
    totp: bool

    @property
    def actor(self) -> str:
        """Its name in the admin audit trail."""
        return f"portal:{self.login}"


def page(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    """A rendered page with the portal's security headers."""
    developer = getattr(request.state, "developer", None)
    html = _ENV.get_template(template).render(base=BASE, developer=developer, **values)
    return HTMLResponse(html, status_code=status, headers={"Content-Security-Policy": CSP})


def message(request: Request, status: int, title: str, text: str) -> HTMLResponse:
    return page(request, "message.html", status, title=title, text=text)


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(BASE + path, status_code=303)


async def form_of(request: Request) -> FormData | None:
    """The request's urlencoded form (``None``: not a form, or too large to be one)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    length = request.headers.get("content-length")
    if length is None or not length.isdigit() or int(length) > MAX_FORM_BYTES:
        return None
    return await request.form(max_files=0, max_fields=64)


def field(form: FormData, name: str, limit: int = 1024) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


# -- CSRF before sign-in -----------------------------------------------------------------------

def _pre_cookie(ctx: AdminContext) -> str:
    return "__Host-bastion_portal_form" if ctx.tls else "bastion_portal_form"


def pre_token(ctx: AdminContext, request: Request) -> str:
    """The form token of this browser (the cookie's value, or a new one :func:`with_pre_cookie` sets)."""
    current = request.cookies.get(_pre_cookie(ctx), "")
    return current if 20 <= len(current) <= 64 else tokens.new_secret_value()


def with_pre_cookie(ctx: AdminContext, response: Response, token: str) -> Response:
    response.set_cookie(_pre_cookie(ctx), token, max_age=3600, path="/", secure=ctx.tls, httponly=True,
                        samesite="strict")
    return response


def pre_token_ok(ctx: AdminContext, request: Request, form: FormData) -> bool:
    cookie = request.cookies.get(_pre_cookie(ctx), "")
    sent = field(form, CSRF_FIELD, 128)
    return bool(cookie) and bool(sent) and hmac.compare_digest(cookie.encode(), sent.encode())


def session_token_ok(developer: Developer, form: FormData) -> bool:
    sent = field(form, CSRF_FIELD, 128)
    return bool(sent) and hmac.compare_digest(sent.encode(), developer.csrf.encode())


# -- the signed-in developer -------------------------------------------------------------------

def cookie_of(ctx: AdminContext, request: Request) -> str:
    return request.cookies.get(session_cookie_name(ctx, "portal"), "")


async def developer_of(ctx: AdminContext, request: Request, *, mfa: bool = True) -> Developer | None:
    """The developer the portal session cookie names (with ``mfa=False``: also a session
    still waiting for its second factor)."""
    cookie = cookie_of(ctx, request)
    if not cookie:
        return None
    return await ctx.call(_load_developer, ctx, cookie, client_address(request), mfa)


def _load_developer(ctx: AdminContext, cookie: str, source: str, mfa: bool) -> Developer | None:
    store = ctx.store()
    with store.write() as session:
        row = websessions.find(session, store.pepper, "portal", cookie, utcnow(), ctx.session_policy)
        if row is None or row.mfa != mfa:
            return None
        account = accounts.get(session, row.subject_id)
        if account is None or account.disabled:
            return None
        consumer = accounts.consumer_of(session, account)
        return Developer(account.id, account.login, consumer.id, consumer.name, consumer.plan, tuple(consumer.roles),
                         row.csrf, source, account.totp_secret is not None)


Page = Callable[[AdminContext, Request, Developer], Awaitable[Response]]


def signed_in(ctx: AdminContext, endpoint: Page) -> Callable[[Request], Awaitable[Response]]:
    """Only for a fully signed-in developer: others are sent to the sign-in page (or refused,
    for a form). Every POST must carry the session's CSRF token."""

    async def guarded(request: Request) -> Response:
        developer = await developer_of(ctx, request)
        if developer is None:
            if request.method in ("GET", "HEAD"):
                return redirect("/login")
            return message(request, 401, "Signed out", "Your session has ended: sign in again.")
        request.state.developer = developer
        if request.method == "POST":
            form = await form_of(request)
            if form is None or not session_token_ok(developer, form):
                return message(request, 403, "Form refused",
                               "This form lacks its security token (CSRF): reload the page and try again.")
        return await endpoint(ctx, request, developer)

    return guarded
