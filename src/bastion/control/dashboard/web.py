"""What every dashboard page shares: the Jinja2 templates (autoescaped), the strict
Content-Security-Policy, the static files served from the package, and the sign-in form's
pre-session CSRF cookie."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from bastion.control.accounts import tokens
from bastion.control.auth import Principal
from bastion.control.context import AdminContext

PREFIX = "/ui"
LOGIN_PAGE = PREFIX + "/login"
_HERE = Path(__file__).parent
STATIC = _HERE / "static"
#: No inline script or style, nothing from elsewhere, no framing, forms only to this origin.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".svg": "image/svg+xml"}
#: The sign-in form's double-submit cookie: a browser has no session yet, so the form's token
#: is checked against this cookie (which another site can neither read nor set).
LOGIN_CSRF_COOKIE = "bastion_login_csrf"

_ENV = Environment(loader=FileSystemLoader(str(_HERE / "templates")), autoescape=select_autoescape(default=True),
                   trim_blocks=True, lstrip_blocks=True)


def render(request: Request, template: str, status: int = 200, *, principal: Principal | None = None,
           **values: Any) -> HTMLResponse:
    """A page from ``template``, with the policy headers every page carries."""
    html = _ENV.get_template(template).render(prefix=PREFIX, path=request.url.path, principal=principal, **values)
    return HTMLResponse(html, status_code=status, headers={"Content-Security-Policy": CSP})


def refusal_page(request: Request, status: int, title: str, reason: str) -> HTMLResponse:
    """A refusal (:func:`bastion.control.auth.requires`) as a page: why, and where to go next
    (sign in again after a 401, the dashboard's front page otherwise)."""
    signed_out = status == 401
    return render(request, "message.html", status, title=title, message=reason,
                  link=LOGIN_PAGE if signed_out else PREFIX + "/",
                  link_text="Sign in" if signed_out else "Back to the dashboard")


def static_file(name: str) -> Response:
    """A file of the package's ``static`` folder (named, never a path: no traversal)."""
    target = STATIC / name
    media = _STATIC_TYPES.get(target.suffix)
    if "/" in name or name.startswith(".") or media is None or not target.is_file():
        return Response("Not found", status_code=404, media_type="text/plain")
    # Cache-Control no-store comes from the admin app's hardening, like every other answer.
    return Response(target.read_bytes(), media_type=media)


def login_csrf_cookie_name(ctx: AdminContext) -> str:
    return f"__Host-{LOGIN_CSRF_COOKIE}" if ctx.tls else LOGIN_CSRF_COOKIE


def issue_login_csrf(ctx: AdminContext, request: Request) -> str:
    """The sign-in form's token: the browser's current one, or a new one (set by the page)."""
    current = request.cookies.get(login_csrf_cookie_name(ctx), "")
    return current if 20 <= len(current) <= 64 else tokens.new_secret_value()


def set_login_csrf(ctx: AdminContext, response: Response, value: str) -> None:
    response.set_cookie(login_csrf_cookie_name(ctx), value, max_age=3600, path="/", secure=ctx.tls, httponly=True,
                        samesite="strict")


def login_csrf_ok(ctx: AdminContext, request: Request, sent: str | None) -> bool:
    """Whether the sign-in form's token matches the browser's cookie (double submit)."""
    cookie = request.cookies.get(login_csrf_cookie_name(ctx))
    if not cookie or not sent:
        return False
    return hmac.compare_digest(cookie.encode(), sent.encode())


def form_text(form: Any, name: str, limit: int = 1024) -> str:
    """A form field as text ('' when absent or not text), cut at ``limit`` characters."""
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""
