"""The consumers page's "portal password reset" form (operator): a one-time link for a
developer who forgot their portal password, shown once on the page that answers the form.
The same link as ``bastion consumers reset-password`` and the admin API's
``POST /api/v1/portal-accounts/{login}/reset-link`` make."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from bastion.control.auth import principal_of
from bastion.control.context import AdminContext
from bastion.control.dashboard.pages import Pages, _audit, _when
from bastion.control.dashboard.web import form_text, render
from bastion.store import portal as accounts
from bastion.store.errors import StoreError

#: The dashboard's links last a day (the CLI and the API take a duration).
TTL = timedelta(hours=24)


class PortalReset:
    def __init__(self, ctx: AdminContext, pages: Pages) -> None:
        self.ctx = ctx
        self.pages = pages

    async def submit(self, request: Request) -> Response:
        form = await request.form()
        login = form_text(form, "login", 255).strip()
        who = principal_of(request)
        try:
            shown, consumer, token, expires = await self.ctx.call(self._issue, login, who.audit())
        except StoreError as exc:
            return await self.pages.consumers(request, f"No reset link: {exc}.", 422)
        # The link is on the address this browser reached the dashboard at.
        link = f"{str(request.base_url).rstrip('/')}/portal/reset/{token}"
        return render(request, "reset_link.html", principal=who, login=shown, consumer=consumer, link=link,
                      expires=expires, portal_enabled=self.ctx.settings.portal.enabled)

    def _issue(self, login: str, who: dict[str, str]) -> tuple[str, str, str, str]:
        store = self.ctx.store()
        with store.write() as session:
            account, token = accounts.reset_link(session, store.pepper, login, TTL)
            consumer = accounts.consumer_of(session, account).name
            expires = _when(account.invite_expires_at)
            _audit(session, who, "portal.reset_link", f"portal:{account.login}",
                   after={"consumer": consumer, "expires": expires})
            return account.login, consumer, token, expires
