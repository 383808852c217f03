"""``bastion consumers reset-password LOGIN``: a one-time link for a portal developer who
forgot their password, made in the store or, with ``--admin-url``, by the admin API.

The link is the last line of the output (or in ``--json``), shown once; Bastion sends no
mail itself. It works once, until it expires; the account's current password keeps working
until the developer sets the new one.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from bastion.cli.output import err, out
from bastion.cli.remote import AdminUrlOpt, JsonOpt, TokenOpt, print_json, remote
from bastion.cli.storeaccess import configured_store, parse_duration, when

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="Configuration file (its `store:` says where the store is)."),
]


def reset_password(
    login: Annotated[str, typer.Argument(help="The developer's portal login.")],
    expires: Annotated[str, typer.Option("--expires", help="How long the link works: 24h, 30m, 7d (at most).")] = "24h",
    url: Annotated[
        str | None,
        typer.Option("--url", help="Base URL developers reach the admin listener at (default: from `admin:`)."),
    ] = None,
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue a one-time link for the portal developer LOGIN to choose a new password; the
    link is the last line."""
    ttl = parse_duration(expires, "--expires")
    api = remote(admin_url, token)
    if api is not None:
        answer = api.call("POST", f"/api/v1/portal-accounts/{login}/reset-link",
                          {"expires_in": int(ttl.total_seconds())})
        link = str(answer["link"])
        if url is not None:  # the API names the address it was reached at; the developer may use another
            link = url.rstrip("/") + link[link.index("/portal/reset/"):]
            answer["link"] = link
        _show(answer["login"], answer["expires_at"], link, answer, bool(answer.get("portal_enabled")), as_json)
        return
    shown, expires_at, link, enabled = _local(login, ttl, url, config)
    _show(shown, expires_at, link, {"login": shown, "link": link, "expires_at": expires_at,
                                    "portal_enabled": enabled}, enabled, as_json)


def _local(login: str, ttl: timedelta, url: str | None, config: Path) -> tuple[str, str, str, bool]:
    import getpass

    from bastion.cli.consumers import _admin_url
    from bastion.config import load_config
    from bastion.store import adminaudit
    from bastion.store import portal as accounts

    with configured_store(config) as store, store.write() as session:
        account, secret = accounts.reset_link(session, store.pepper, login, ttl)
        expires_at = when(account.invite_expires_at)
        adminaudit.record(session, actor=f"cli:{getpass.getuser()}", via="cli", action="portal.reset_link",
                          target=f"portal:{account.login}", source="cli",
                          after={"consumer": accounts.consumer_of(session, account).name, "expires": expires_at})
        shown = account.login
    settings = load_config(config).config.admin  # valid: configured_store loaded it
    base = (url or _admin_url(settings.host, settings.port, settings.tls is not None)).rstrip("/")
    return shown, expires_at, f"{base}/portal/reset/{secret}", settings.portal.enabled


def _show(login: str, expires_at: str, link: str, answer: dict[str, object], enabled: bool, as_json: bool) -> None:
    if as_json:
        print_json(answer)
        return
    if not enabled:
        err.print("warning: admin.portal.enabled is false: the link works once the portal is enabled", markup=False)
    err.print(f"password-reset link for {login}; it works once, until {expires_at}:", markup=False)
    out.print(link, markup=False, soft_wrap=True)
