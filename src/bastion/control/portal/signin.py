"""Getting in: invitation links, registration (when enabled), sign-in with password and, where
the developer enrolled one, a TOTP code; sign-out; enrolling the second factor; changing the
password.

The same machinery as the dashboard's (:mod:`bastion.control.accounts.login`): argon2id
passwords, lockout after repeated failures, TOTP codes accepted once. A session is opened
only once the password is right, with a fresh cookie (a cookie planted earlier is never
promoted), and replaced by another once the second factor is given.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from bastion.control.accounts import login as logins
from bastion.control.accounts import tokens, totp
from bastion.control.auth import clear_session_cookie, client_address, set_session_cookie
from bastion.control.context import AdminContext
from bastion.control.portal.web import (
    Developer,
    cookie_of,
    developer_of,
    field,
    form_of,
    message,
    page,
    pre_token,
    pre_token_ok,
    redirect,
    session_token_ok,
    with_pre_cookie,
)
from bastion.store import adminaudit, websessions
from bastion.store import portal as accounts
from bastion.store.errors import StoreError
from bastion.store.models import PortalAccount, WebSession, utcnow

_LOCKED = "Too many failed attempts: this account is locked for a while. Try again later."
_REFUSED = "Wrong login or password."


def _form_page(ctx: AdminContext, request: Request, template: str, status: int = 200, **values: object) -> Response:
    """A page with a pre-sign-in form, and the cookie its token must match."""
    token = pre_token(ctx, request)
    return with_pre_cookie(ctx, page(request, template, status, form_token=token, **values), token)


async def _pre_form(ctx: AdminContext, request: Request) -> tuple[dict[str, str], Response | None]:
    form = await form_of(request)
    if form is None or not pre_token_ok(ctx, request, form):
        return {}, message(request, 403, "Form refused",
                           "This form lacks its security token (CSRF): reload the page and try again.")
    return {k: v for k, v in form.items() if isinstance(v, str)}, None


def _start_session(ctx: AdminContext, account_id: str, source: str, mfa: bool, old_cookie: str) -> str:
    store = ctx.store()
    with store.write() as session:
        if old_cookie:
            old = session.get(WebSession, tokens.keyed_hash(store.pepper, old_cookie))
            if old is not None and old.kind == "portal":
                websessions.close(session, old)
        _, cookie = websessions.open_session(session, store.pepper, "portal", account_id, source, mfa, utcnow(),
                                             ctx.session_policy)
        return cookie


# -- sign-in -----------------------------------------------------------------------------------

async def login_page(ctx: AdminContext, request: Request) -> Response:
    if request.method == "GET":
        notice = "Your password is set: sign in." if request.query_params.get("ready") else None
        return _form_page(ctx, request, "login.html", notice=notice, error=None, login="",
                          registration=ctx.settings.portal.registration)
    values, refused = await _pre_form(ctx, request)
    if refused is not None:
        return refused
    name, password = values.get("login", "")[:255], values.get("password", "")
    outcome, account_id = await ctx.call(_check_password, ctx, name, password)
    if outcome in (logins.Outcome.REFUSED, logins.Outcome.LOCKED):
        status, error = (401, _REFUSED) if outcome is logins.Outcome.REFUSED else (423, _LOCKED)
        return _form_page(ctx, request, "login.html", status, notice=None, error=error, login=name,
                          registration=ctx.settings.portal.registration)
    if account_id is None:  # check_password answers OK or NEEDS_TOTP only for an account
        return message(request, 500, "Sign-in failed", "The sign-in could not be completed; try again.")
    mfa = outcome is logins.Outcome.OK
    cookie = await ctx.call(_start_session, ctx, account_id, client_address(request), mfa, cookie_of(ctx, request))
    response = redirect("/" if mfa else "/totp")
    set_session_cookie(ctx, response, cookie, kind="portal")
    return response


def _check_password(ctx: AdminContext, name: str, password: str) -> tuple[logins.Outcome, str | None]:
    store = ctx.store()
    with store.write() as session:
        account = accounts.by_login(session, name) if name.strip() else None
        # An account whose invitation is not yet accepted has no password anyone knows.
        usable = account if account is not None and accounts.password_usable(account) else None
        outcome = logins.check_password(usable, password, utcnow(), ctx.login_policy)
        return outcome, usable.id if usable is not None else None


async def totp_page(ctx: AdminContext, request: Request) -> Response:
    """The second step of a sign-in, for a session that has the password but not the code."""
    pending = await developer_of(ctx, request, mfa=False)
    if pending is None:
        return redirect("/login")
    if request.method == "GET":
        return page(request, "totp.html", pending=pending, error=None)
    form = await form_of(request)
    if form is None or not session_token_ok(pending, form):
        return message(request, 403, "Form refused", "This form lacks its security token (CSRF): sign in again.")
    outcome = await ctx.call(_check_code, ctx, pending.account_id, field(form, "code", 16))
    if outcome is not logins.Outcome.OK:
        status, error = (423, _LOCKED) if outcome is logins.Outcome.LOCKED else (401, "Wrong or reused code.")
        return page(request, "totp.html", status, pending=pending, error=error)
    cookie = await ctx.call(_start_session, ctx, pending.account_id, client_address(request), True,
                            cookie_of(ctx, request))
    response = redirect("/")
    set_session_cookie(ctx, response, cookie, kind="portal")
    return response


def _check_code(ctx: AdminContext, account_id: str, code: str) -> logins.Outcome:
    store = ctx.store()
    with store.write() as session:
        account = accounts.get(session, account_id)
        if account is None:
            return logins.Outcome.REFUSED
        return logins.check_totp(account, store.pepper, code, utcnow(), ctx.login_policy)


async def logout(ctx: AdminContext, request: Request, developer: Developer) -> Response:
    await ctx.call(_close, ctx, cookie_of(ctx, request))
    response = redirect("/login")
    clear_session_cookie(ctx, response, kind="portal")
    return response


def _close(ctx: AdminContext, cookie: str) -> None:
    store = ctx.store()
    with store.write() as session:
        row = session.get(WebSession, tokens.keyed_hash(store.pepper, cookie))
        if row is not None:
            websessions.close(session, row)


# -- invitations and registration ----------------------------------------------------------------

async def invite_page(ctx: AdminContext, request: Request) -> Response:
    """An invitation link: choose the first password (the link then stops working)."""
    return await _link_page(ctx, request, "invite.html", "portal.invite.accept", "Invitation not found",
                            "This invitation link is unknown, was used already or has expired: ask for a new one.")


async def reset_page(ctx: AdminContext, request: Request) -> Response:
    """A password-reset link (issued by an operator): choose a new password; the link then
    stops working and every session of the account ends. A second factor stays enrolled and
    is still asked at the next sign-in."""
    return await _link_page(ctx, request, "reset.html", "portal.password.reset", "Reset link not found",
                            "This password-reset link is unknown, was used already or has expired: "
                            "ask the API's operators for a new one.")


async def _link_page(ctx: AdminContext, request: Request, template: str, action: str, missing: str,
                     why: str) -> Response:
    """A one-time link's page: the form to set the password, then its use (``action`` in the
    admin audit trail)."""
    token = str(request.path_params["token"])
    found = await ctx.call(_invited, ctx, token)
    if found is None:
        return message(request, 404, missing, why)
    login_name, consumer = found
    if request.method == "GET":
        return _form_page(ctx, request, template, login=login_name, consumer=consumer, error=None)
    values, refused = await _pre_form(ctx, request)
    if refused is not None:
        return refused
    error = await ctx.call(_accept, ctx, token, values.get("password", ""), values.get("confirm", ""),
                           client_address(request), action)
    if error is not None:
        return _form_page(ctx, request, template, 422, login=login_name, consumer=consumer, error=error)
    return redirect("/login?ready=1")


def _invited(ctx: AdminContext, token: str) -> tuple[str, str] | None:
    store = ctx.store()
    with store.read() as session:
        account = accounts.by_invitation(session, store.pepper, token, utcnow())
        if account is None:
            return None
        return account.login, accounts.consumer_of(session, account).name


def _accept(ctx: AdminContext, token: str, password: str, confirm: str, source: str, action: str) -> str | None:
    if password != confirm:
        return "The two passwords differ."
    store = ctx.store()
    with store.write() as session:
        account = accounts.by_invitation(session, store.pepper, token, utcnow())
        if account is None:
            return "This link was used already or has expired."
        problem = logins.set_password(account, password, account.login.split("@")[0])
        if problem is not None:  # nothing was changed
            return problem[0].upper() + problem[1:] + "."
        accounts.spend_invitation(account)
        account.failed_logins, account.locked_until = 0, None
        websessions.close_all(session, "portal", account.id)
        adminaudit.record(session, actor=f"portal:{account.login}", via="session", action=action,
                          target=f"portal:{account.login}", source=source)
    return None


async def register_page(ctx: AdminContext, request: Request) -> Response:
    """Self-registration (``admin.portal.registration``): a new consumer on ``admin.portal.plan``."""
    if not ctx.settings.portal.registration:
        return message(request, 404, "Not found", "Registration is closed: ask the API's operators for an invitation.")
    if request.method == "GET":
        return _form_page(ctx, request, "register.html", login="", error=None)
    values, refused = await _pre_form(ctx, request)
    if refused is not None:
        return refused
    name, password = values.get("login", "")[:255], values.get("password", "")
    if password != values.get("confirm", ""):
        return _form_page(ctx, request, "register.html", 422, login=name, error="The two passwords differ.")
    error = await ctx.call(_register, ctx, name, password, client_address(request))
    if error is not None:
        return _form_page(ctx, request, "register.html", 422, login=name, error=error)
    return redirect("/login?ready=1")


def _register(ctx: AdminContext, name: str, password: str, source: str) -> str | None:
    store = ctx.store()
    try:
        with store.write() as session:
            account = accounts.register(session, name, password, ctx.settings.portal.plan)
            adminaudit.record(session, actor=f"portal:{account.login}", via="session", action="portal.register",
                              target=f"portal:{account.login}", source=source,
                              after={"login": account.login, "plan": ctx.settings.portal.plan})
    except StoreError as exc:
        text = str(exc)
        return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
    return None


# -- the account: second factor and password ---------------------------------------------------

def _account(request: Request, developer: Developer, status: int = 200, *, secret: str | None = None,
             totp_error: str | None = None, totp_done: bool = False, pw_error: str | None = None,
             pw_done: bool = False) -> Response:
    """The account page; a developer without a second factor is offered one (a new secret,
    unless a failed attempt's is shown again)."""
    offer = None if developer.totp or totp_done else (secret if secret and _base32(secret) else totp.new_secret())
    uri = totp.provisioning_uri(offer, developer.login) if offer else None
    return page(request, "account.html", status, secret=offer, uri=uri, totp_error=totp_error, totp_done=totp_done,
                pw_error=pw_error, pw_done=pw_done)


async def account_page(ctx: AdminContext, request: Request, developer: Developer) -> Response:
    """The account page; its POST enrols a TOTP second factor: the secret is shown (and carried
    by the form) until a code from the app proves it was saved."""
    if request.method == "GET":
        return _account(request, developer, pw_done=request.query_params.get("changed") == "1")
    form = await form_of(request)
    if form is None:  # signed_in read it already
        return message(request, 400, "Form refused", "This is not a form.")
    secret = field(form, "secret", 64)
    if not await ctx.call(_enrol, ctx, developer, secret, field(form, "code", 16)):
        return _account(request, developer, 422, secret=secret,
                        totp_error="That code does not match: check the app's clock and retry.")
    return _account(request, developer, totp_done=True)


async def password_page(ctx: AdminContext, request: Request, developer: Developer) -> Response:
    """Change the password (the current one is asked again): every other session of the
    account ends, this browser gets a new one."""
    form = await form_of(request)
    if form is None:  # signed_in read it already
        return message(request, 400, "Form refused", "This is not a form.")
    new = field(form, "password")
    if new != field(form, "confirm"):
        return _account(request, developer, 422, pw_error="The two new passwords differ.")
    error = await ctx.call(_change_password, ctx, developer, field(form, "current"), new)
    if error is not None:
        return _account(request, developer, 423 if error == _LOCKED else 422, pw_error=error)
    cookie = await ctx.call(_start_session, ctx, developer.account_id, developer.source, True, "")
    # A redirect, so that the next page's forms carry the new session's CSRF token.
    response = redirect("/account?changed=1")
    set_session_cookie(ctx, response, cookie, kind="portal")
    return response


def _change_password(ctx: AdminContext, developer: Developer, current: str, new: str) -> str | None:
    store = ctx.store()
    with store.write() as session:
        account = accounts.get(session, developer.account_id)
        outcome = logins.check_password(account, current, utcnow(), ctx.login_policy)
        if account is None or outcome in (logins.Outcome.REFUSED, logins.Outcome.LOCKED):
            return _LOCKED if outcome is logins.Outcome.LOCKED else "The current password is wrong."
        problem = logins.set_password(account, new, developer.login.split("@")[0])
        if problem is not None:
            return problem[0].upper() + problem[1:] + "."
        websessions.close_all(session, "portal", account.id)
        adminaudit.record(session, action="portal.password", target=f"portal:{developer.login}",
                          actor=developer.actor, via="session", source=developer.source)
    return None


def _base32(secret: str) -> bool:
    return 16 <= len(secret) <= 64 and all(c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for c in secret)


def _enrol(ctx: AdminContext, developer: Developer, secret: str, code: str) -> bool:
    if not _base32(secret):
        return False
    store = ctx.store()
    with store.write() as session:
        account: PortalAccount | None = accounts.get(session, developer.account_id)
        if account is None or account.totp_secret is not None:
            return False
        if not logins.enrol_totp(account, store.pepper, secret, code, utcnow()):
            return False
        adminaudit.record(session, target=f"portal:{developer.login}", action="portal.totp.enrol",
                          actor=developer.actor, via="session", source=developer.source)
    return True
