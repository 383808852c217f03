"""Signing in to the dashboard: password, then what the account still owes, then a session.

1. ``/ui/login``: name and password. The form carries a pre-session CSRF token checked
   against a cookie (double submit), so another site cannot sign a browser in as someone else.
2. A right password opens a *pending* session: a store session with ``mfa=False`` that lasts
   ten minutes. :func:`bastion.control.auth.authenticate` never accepts it: it can only
   finish the sign-in at ``/ui/login/step``, which asks, in this order, for a new password
   (after a one-time password; with the TOTP code too when the account has a second
   factor), the TOTP code, or, for an ``admin`` without a second factor, its enrolment.
3. Only then a new session is opened with ``mfa=True`` under a new cookie value: a cookie
   set before the sign-in (planted by someone else) is never the session after it.

Wrong names, wrong passwords and locked accounts get one answer, so the page tells no one
which accounts exist. Every attempt counts toward the per-address rate limit.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bastion.config.secrets import MasterKeyError
from bastion.control.accounts import login, passwords, totp
from bastion.control.accounts.roles import Role
from bastion.control.auth import authenticate, clear_session_cookie, session_cookie_name, set_session_cookie
from bastion.control.auth import client_address as client_of
from bastion.control.context import AdminContext
from bastion.control.dashboard.limiter import LoginLimiter
from bastion.control.dashboard.web import (
    LOGIN_PAGE,
    PREFIX,
    form_text,
    issue_login_csrf,
    login_csrf_ok,
    render,
    set_login_csrf,
)
from bastion.store import adminaudit, admins, websessions
from bastion.store.models import AdminUser, WebSession, utcnow
from bastion.store.websessions import SessionPolicy

STEP_PAGE = LOGIN_PAGE + "/step"
#: How long a password-checked browser has to finish signing in.
PENDING = SessionPolicy(ttl=timedelta(minutes=10), idle=timedelta(minutes=10))
REFUSED = "Sign-in failed: the name or password is wrong, or the account is locked for a while after too many failures."
TOO_MANY = "Too many sign-in attempts from your address: wait a minute and try again."


class Step(Enum):
    PASSWORD = "password"  # noqa: S105 - the name of a step, not a secret
    TOTP = "totp"
    ENROL = "enrol"


def next_step(user: AdminUser) -> Step | None:
    """What the account must still do before it gets a session (``None``: nothing)."""
    if user.must_change_password:
        return Step.PASSWORD
    if user.totp_secret is not None:
        return Step.TOTP
    if Role.parse(user.role) is Role.ADMIN:
        return Step.ENROL
    return None


@dataclass(frozen=True)
class StepView:
    """What a step's page shows."""

    step: Step
    name: str
    csrf: str
    #: The account's second factor must come with the new password.
    with_code: bool = False
    #: Enrolment: the new secret, sealed (the form sends it back), in clear and as a URI.
    sealed: str = ""
    secret: str = ""
    uri: str = ""


@dataclass(frozen=True)
class Advance:
    """What one submitted step decided: ``cookie`` to set (a new pending or full session),
    ``done`` when signed in, ``error`` to show on ``view``, ``refused`` to start over."""

    cookie: str | None = None
    done: bool = False
    error: str | None = None
    view: StepView | None = None
    refused: bool = False
    csrf_failed: bool = False


class LoginFlow:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx
        self.limiter = LoginLimiter(ctx.settings.login.attempts_per_minute)

    # -- pages -------------------------------------------------------------------------------
    async def form(self, request: Request) -> Response:
        if await authenticate(self.ctx, request) is not None:
            return RedirectResponse(PREFIX + "/", status_code=303)
        return self._login_page(request)

    def _login_page(self, request: Request, error: str | None = None, status: int = 200, name: str = "") -> Response:
        token = issue_login_csrf(self.ctx, request)
        response = render(request, "login.html", status, csrf=token, error=error, name=name)
        set_login_csrf(self.ctx, response, token)
        return response

    async def submit(self, request: Request) -> Response:
        source = client_of(request)
        if not self.limiter.allow(source):
            return self._login_page(request, TOO_MANY, 429)
        form = await request.form()
        if not login_csrf_ok(self.ctx, request, form_text(form, "csrf_token", 128)):
            return self._login_page(request, "The sign-in form had expired; it is fresh now: sign in again.", 403)
        name = form_text(form, "name", 128).strip()
        cookie, done = await self.ctx.call(self._check_password, name, form_text(form, "password"), source)
        if cookie is None:
            return self._login_page(request, REFUSED, 401, name)
        response = RedirectResponse(PREFIX + "/" if done else STEP_PAGE, status_code=303)
        set_session_cookie(self.ctx, response, cookie)
        return response

    async def step_form(self, request: Request) -> Response:
        view = await self.ctx.call(self._view, request.cookies.get(session_cookie_name(self.ctx), ""), None)
        if view is None:
            return RedirectResponse(LOGIN_PAGE, status_code=303)
        return render(request, "login_step.html", view=view, error=None)

    async def step_submit(self, request: Request) -> Response:
        source = client_of(request)
        if not self.limiter.allow(source):
            return self._login_page(request, TOO_MANY, 429)
        form = await request.form()
        values = {k: form_text(form, k) for k in ("csrf_token", "code", "password", "confirm", "sealed")}
        cookie = request.cookies.get(session_cookie_name(self.ctx), "")
        result = await self.ctx.call(self._advance, cookie, values, source)
        if result.csrf_failed:
            return render(request, "message.html", 403, title="Forbidden",
                          message="The form lacks this sign-in's CSRF token: start again from the sign-in page.")
        if result.refused:
            response = self._login_page(request, REFUSED, 401)
            clear_session_cookie(self.ctx, response)
            return response
        if result.error is not None and result.view is not None:
            return render(request, "login_step.html", 422, view=result.view, error=result.error)
        response = RedirectResponse(PREFIX + "/" if result.done else STEP_PAGE, status_code=303)
        if result.cookie is not None:
            set_session_cookie(self.ctx, response, result.cookie)
        return response

    async def logout(self, request: Request) -> Response:
        """POST only, behind :func:`requires` (which checks the session's CSRF token)."""
        await self.ctx.call(self._close, request.cookies.get(session_cookie_name(self.ctx), ""), client_of(request))
        response = RedirectResponse(LOGIN_PAGE, status_code=303)
        clear_session_cookie(self.ctx, response)
        return response

    # -- store work (in a thread) ---------------------------------------------------------------
    def _check_password(self, name: str, password: str, source: str) -> tuple[str | None, bool]:
        """The new session's cookie (pending, or full when nothing else is owed) and whether
        it is full; ``(None, False)`` when refused."""
        store = self.ctx.store()
        now = utcnow()
        with store.write() as session:
            user = admins.get(session, name) if name else None
            outcome = login.check_password(user, password, now, self.ctx.login_policy)
            if user is None or outcome not in (login.Outcome.OK, login.Outcome.NEEDS_TOTP):
                return None, False
            if outcome is login.Outcome.OK and next_step(user) is None:
                return self._open_full(session, store.pepper, user, source), True
            _, cookie = websessions.open_session(session, store.pepper, "admin", user.id, source, False, now, PENDING)
            return cookie, False

    def _open_full(self, session: Any, pepper: bytes, user: AdminUser, source: str) -> str:
        _, cookie = websessions.open_session(session, pepper, "admin", user.id, source, True, utcnow(),
                                             self.ctx.session_policy)
        adminaudit.record(session, actor=user.name, via="session", action="login", target=f"admin:{user.name}",
                          source=source)
        return cookie

    def _pending(self, session: Any, pepper: bytes, cookie: str) -> tuple[WebSession, AdminUser, Step] | None:
        """The browser's pending session, its account and the step it is at."""
        row = websessions.find(session, pepper, "admin", cookie, utcnow(), PENDING)
        if row is None or row.mfa:
            return None
        user = session.get(AdminUser, row.subject_id)
        step = next_step(user) if user is not None and not user.disabled else None
        if user is None or step is None:
            return None
        return row, user, step

    def _view(self, cookie: str, sealed: str | None) -> StepView | None:
        store = self.ctx.store()
        with store.write() as session:
            found = self._pending(session, store.pepper, cookie)
            if found is None:
                return None
            return self._make_view(store.pepper, *found, sealed)

    @staticmethod
    def _make_view(pepper: bytes, row: WebSession, user: AdminUser, step: Step, sealed: str | None) -> StepView:
        if step is not Step.ENROL:
            return StepView(step, user.name, row.csrf, with_code=user.totp_secret is not None)
        secret = totp.new_secret() if not sealed else totp.unseal(pepper, sealed)
        return StepView(step, user.name, row.csrf, sealed=sealed or totp.seal(pepper, secret), secret=secret,
                        uri=totp.provisioning_uri(secret, user.name))

    def _advance(self, cookie: str, form: dict[str, str], source: str) -> Advance:
        store = self.ctx.store()
        now = utcnow()
        policy = self.ctx.login_policy
        with store.write() as session:
            found = self._pending(session, store.pepper, cookie)
            if found is None:
                return Advance(refused=True)
            row, user, step = found
            if not login_csrf_matches(row.csrf, form["csrf_token"]):
                return Advance(csrf_failed=True)
            sealed = form["sealed"] if step is Step.ENROL else None
            try:
                view = self._make_view(store.pepper, row, user, step, sealed)
            except MasterKeyError:
                view = self._make_view(store.pepper, row, user, step, None)
                return Advance(error="The enrolment form was altered: scan the new secret.", view=view)
            if step is Step.PASSWORD or step is Step.TOTP:
                if user.totp_secret is not None:
                    outcome = login.check_totp(user, store.pepper, form["code"], now, policy)
                    if outcome is login.Outcome.LOCKED:
                        websessions.close(session, row)
                        return Advance(refused=True)
                    if outcome is not login.Outcome.OK:
                        return Advance(error="That code is wrong or was used already: enter the current one.",
                                       view=view)
                if step is Step.TOTP:
                    websessions.close(session, row)
                    return Advance(cookie=self._open_full(session, store.pepper, user, source), done=True)
                return self._change_password(session, store.pepper, row, user, form, source, view)
            # Enrolment: the code proves the authenticator app has the secret.
            if not login.enrol_totp(user, store.pepper, view.secret, form["code"], now):
                return Advance(error="That code does not match the secret: check the app's clock and try again.",
                               view=view)
            adminaudit.record(session, actor=user.name, via="session", action="totp.enrol",
                              target=f"admin:{user.name}", source=source)
            websessions.close(session, row)
            return Advance(cookie=self._open_full(session, store.pepper, user, source), done=True)

    def _change_password(self, session: Any, pepper: bytes, row: WebSession, user: AdminUser,
                         form: dict[str, str], source: str, view: StepView) -> Advance:
        new = form["password"]
        if new != form["confirm"]:
            return Advance(error="The two passwords differ.", view=view)
        if passwords.verify_password(user.password_hash, new):
            return Advance(error="Choose a password other than the one you signed in with.", view=view)
        error = login.set_password(user, new, user.name)
        if error is not None:
            return Advance(error=error[0].upper() + error[1:] + ".", view=view)
        adminaudit.record(session, actor=user.name, via="session", action="password.change",
                          target=f"admin:{user.name}", source=source)
        # A new password ends every session of the account, this pending one included.
        websessions.close_all(session, "admin", user.id)
        session.flush()
        if user.totp_secret is not None or next_step(user) is None:
            return Advance(cookie=self._open_full(session, pepper, user, source), done=True)
        _, cookie = websessions.open_session(session, pepper, "admin", user.id, source, False, utcnow(), PENDING)
        return Advance(cookie=cookie)

    def _close(self, cookie: str, source: str) -> None:
        store = self.ctx.store()
        with store.write() as session:
            row = websessions.find(session, store.pepper, "admin", cookie, utcnow(), self.ctx.session_policy)
            if row is None:
                return
            user = session.get(AdminUser, row.subject_id)
            name = user.name if user is not None else row.subject_id
            adminaudit.record(session, actor=name, via="session", action="logout", target=f"admin:{name}",
                              source=source)
            websessions.close(session, row)


def login_csrf_matches(expected: str, sent: str) -> bool:
    return bool(sent) and hmac.compare_digest(expected.encode(), sent.encode())
