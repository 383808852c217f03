"""``bastion admin ...``: the control plane's own accounts, on the store the configuration
names (the first admin and token bootstrap the admin API, so by default these do not go
through it), or with ``--admin-url`` through a gateway's admin API (an admin token needed).

There are no default credentials anywhere: ``bastion admin create`` makes a user and prints
a one-time password (the dashboard's first login replaces it, and enrols TOTP for admins);
``bastion admin token create`` prints an API token for scripts and the CLI. Both are shown
once, as the last line of the output, and only their hashes are kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bastion.cli.output import err, out
from bastion.cli.remote import AdminUrlOpt, JsonOpt, TokenOpt, print_json, remote
from bastion.cli.storeaccess import configured_store, fail, parse_duration, when

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="Configuration file (its `store:` says where the store is)."),
]
RoleOpt = Annotated[str, typer.Option("--role", help="viewer, operator or admin.")]

admin_app = typer.Typer(name="admin", help="Admin users and admin API tokens of the control plane.",
                        no_args_is_help=True)
token_app = typer.Typer(name="token", help="Admin API tokens (for scripts and the CLI).", no_args_is_help=True)
admin_app.add_typer(token_app)


def _role(text: str) -> object:
    from bastion.control.accounts.roles import Role

    try:
        return Role.parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--role") from None


def _secret_last(advice: str, secret: str) -> None:
    err.print(advice, markup=False)
    out.print(secret, markup=False, soft_wrap=True)


def _audit(session: Session, action: str, target: str, after: dict[str, object] | None = None) -> None:
    import getpass

    from bastion.store import adminaudit

    adminaudit.record(session, actor=f"cli:{getpass.getuser()}", via="cli", action=action, target=target,
                      source="cli", after=after)


@admin_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The new admin user's name.")],
    role: RoleOpt = "admin",
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an admin user; its one-time password is the last line of the output."""
    from bastion.control.accounts.roles import Role
    from bastion.store import StoreError, admins

    chosen = _role(role)
    assert isinstance(chosen, Role)
    api = remote(admin_url, token)
    if api is not None:
        made = api.call("POST", "/api/v1/admin-users", {"name": name, "role": chosen.label})
        if as_json:
            print_json(made)
            return
        out.print(f"created admin user {made['user']['name']} ({made['user']['role']}) via {api.url}", markup=False)
        _secret_last("One-time password (shown once; the first dashboard login replaces it):", made["password"])
        return
    with configured_store(config) as store, store.write() as session:
        try:
            user, password = admins.create(session, name, chosen)
        except StoreError as exc:
            raise fail(str(exc)) from None
        _audit(session, "admin.create", f"admin:{user.name}", {"name": user.name, "role": user.role})
    out.print(f"created admin user {user.name} ({user.role})", markup=False)
    _secret_last("One-time password (shown once; the first dashboard login replaces it"
                 + (" and enrols a TOTP second factor):" if chosen is Role.ADMIN else "):"), password)


@admin_app.command("list")
def list_(
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List admin users, their roles and state."""
    from bastion.store import admins
    from bastion.store.models import utcnow

    api = remote(admin_url, token)
    if api is not None:
        users = api.call("GET", "/api/v1/admin-users")["items"]
        if as_json:
            for user in users:
                print_json(user)
            return
        remote_table = Table("name", "role", "totp", "state", "last login")
        for u in users:
            state = "disabled" if u["disabled"] else ("locked" if u.get("locked_until") else "active")
            remote_table.add_row(u["name"], u["role"], "yes" if u.get("totp") else "no", state,
                                 u.get("last_login_at") or "-")
        out.print(remote_table)
        return
    with configured_store(config) as store, store.read() as session:
        users = admins.list_all(session)
    now = utcnow()
    table = Table("name", "role", "totp", "state", "last login")
    for u in users:
        state = "disabled" if u.disabled else ("locked" if u.locked_until and u.locked_until > now else "active")
        table.add_row(u.name, u.role, "yes" if u.totp_secret else "no", state, when(u.last_login_at))
    out.print(table)


@admin_app.command("audit")
def audit(
    config: ConfigOpt = Path("bastion.yaml"),
    since: Annotated[str, typer.Option("--since", help="From this long ago: 24h, 7d, 2w.")] = "7d",
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor's entries (as recorded).")] = None,
    action: Annotated[str | None, typer.Option("--action", help="Only this action (key.revoke...).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many entries.")] = 100,
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The admin audit trail, newest first: every write on the control plane, who made it,
    through what (cli, api, dashboard), from where, and what it changed."""
    from datetime import UTC, datetime

    from bastion.store import adminaudit

    start = datetime.now(UTC) - parse_duration(since, "--since")
    api = remote(admin_url, token)
    if api is not None:
        params: dict[str, object] = {"since": start.isoformat(), "limit": limit}
        params.update({k: v for k, v in (("actor", actor), ("action", action)) if v is not None})
        entries = api.call("GET", "/api/v1/admin-audit", params=params)["items"]
    else:
        with configured_store(config) as store, store.read() as session:
            found = adminaudit.query(session, since=start, actor=actor, action=action, limit=limit)
            entries = [adminaudit.as_dict(e) for e in found]
    if as_json:
        for entry in entries:
            print_json(entry)
        return
    table = Table("time", "actor", "via")
    table.add_column("action", overflow="fold")  # folded, never cut: "admin_token.revoke" must read whole
    table.add_column("target", overflow="fold")
    table.add_column("from")
    for e in entries:
        table.add_row(str(e["ts"])[:19].replace("T", " "), e["actor"], e["via"], e["action"], e["target"],
                      e["source"])
    out.print(table)


@admin_app.command("reset-password")
def reset_password(
    name: Annotated[str, typer.Argument(help="The admin user.")],
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Give an admin user a new one-time password (and lift a lockout); ends their sessions."""
    from bastion.store import StoreError, admins, websessions

    api = remote(admin_url, token)
    if api is not None:
        done = api.call("POST", f"/api/v1/admin-users/{name}/reset-password")
        if as_json:
            print_json(done)
            return
        out.print(f"reset the password of {name} via {api.url}", markup=False)
        _secret_last("One-time password (shown once):", done["password"])
        return
    with configured_store(config) as store, store.write() as session:
        try:
            password = admins.reset_password(session, name)
            user = admins.require(session, name)
        except StoreError as exc:
            raise fail(str(exc)) from None
        websessions.close_all(session, "admin", user.id)
        _audit(session, "admin.reset_password", f"admin:{name}")
    out.print(f"reset the password of {name}", markup=False)
    _secret_last("One-time password (shown once):", password)


@admin_app.command("disable")
def disable(
    name: Annotated[str, typer.Argument(help="The admin user.")],
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Disable an admin user: their sessions end and their tokens stop working at once."""
    _remove(name, config, admin_url, token, as_json, delete=False)


@admin_app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="The admin user.")],
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete an admin user with their tokens and sessions."""
    _remove(name, config, admin_url, token, as_json, delete=True)


def _remove(name: str, config: Path, admin_url: str | None, token: str | None, as_json: bool, *,
            delete: bool) -> None:
    """Disable or delete ``name``; never the last active admin user (nobody could then manage
    the control plane but through the store), as the admin API never lets a caller lock
    themselves out."""
    from bastion.control.accounts.roles import Role
    from bastion.store import StoreError, admins, websessions

    verb = "deleted" if delete else "disabled"
    api = remote(admin_url, token)
    if api is not None:
        done = api.call("DELETE", f"/api/v1/admin-users/{name}") if delete else \
            api.call("POST", f"/api/v1/admin-users/{name}/disable")
        if as_json:
            print_json(done)
        else:
            out.print(f"{verb} admin user {name} via {api.url}", markup=False)
        return
    with configured_store(config) as store, store.write() as session:
        try:
            user = admins.require(session, name)
        except StoreError as exc:
            raise fail(str(exc)) from None
        admins_left = [u for u in admins.list_all(session)
                       if not u.disabled and u.id != user.id and Role.parse(u.role) is Role.ADMIN]
        if not admins_left:
            raise fail(f"{name} is the last active admin user: create another first (bastion admin create)")
        websessions.close_all(session, "admin", user.id)
        if delete:
            for row in admins.list_tokens(session, user):  # explicit: SQLite's cascade is per connection
                session.delete(row)
            session.delete(user)
        else:
            user.disabled = True
        _audit(session, f"admin.{'delete' if delete else 'disable'}", f"admin:{name}")
    out.print(f"{verb} admin user {name}", markup=False)


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Argument(help="The admin user the token acts as.")],
    name: Annotated[str, typer.Option("--name", help="What the token is for.")] = "cli",
    role: Annotated[str | None, typer.Option("--role", help="A lower role than the user's (default: theirs).")] = None,
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime: 90d, 24h, 30m (default: none).")] = None,
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an admin API token; the token is the last line of the output, shown once."""
    from bastion.control.accounts.roles import Role
    from bastion.store import StoreError, admins

    chosen = _role(role) if role is not None else None
    assert chosen is None or isinstance(chosen, Role)
    ttl = parse_duration(expires, "--expires") if expires else None
    api = remote(admin_url, token)
    if api is not None:
        body: dict[str, object] = {"user": user, "name": name}
        if chosen is not None:
            body["role"] = chosen.label
        if ttl is not None:
            body["expires_in"] = int(ttl.total_seconds())
        made = api.call("POST", "/api/v1/admin-tokens", body)
        if as_json:
            print_json(made)
            return
        shown = made["token"]
        out.print(f"created admin token {shown['id']} for {user} ({shown['role']}; expires: "
                  f"{shown.get('expires_at') or '-'}) via {api.url}", markup=False)
        _secret_last("Store it now: it is shown only this once. Use it as: Authorization: Bearer <token>",
                     made["secret"])
        return
    with configured_store(config) as store, store.write() as session:
        try:
            owner = admins.require(session, user)
            row, secret = admins.create_token(session, store.pepper, owner, name, chosen, ttl)
        except StoreError as exc:
            raise fail(str(exc)) from None
        _audit(session, "token.create", f"token:{row.id}", {"user": user, "name": row.name, "role": row.role})
    out.print(f"created admin token {row.id} for {user} ({row.role}; expires: {when(row.expires_at)})", markup=False)
    _secret_last("Store it now: it is shown only this once. Use it as: Authorization: Bearer <token>", secret)


@token_app.command("list")
def token_list(
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List admin API tokens by id (never the tokens themselves)."""
    from bastion.store import admins
    from bastion.store.models import AdminUser

    api = remote(admin_url, token)
    if api is not None:
        tokens = api.call("GET", "/api/v1/admin-tokens")["items"]
        if as_json:
            for item in tokens:
                print_json(item)
            return
        remote_table = Table("id", "user", "name", "role", "created", "expires", "last used", "state")
        for t in tokens:
            remote_table.add_row(t["id"], t["user"], t["name"], t["role"], t.get("created_at") or "-",
                                 t.get("expires_at") or "-", t.get("last_used_at") or "-", t.get("state", "-"))
        out.print(remote_table)
        return
    with configured_store(config) as store, store.read() as session:
        rows = admins.list_tokens(session)
        names = {u.id: u.name for u in session.query(AdminUser).all()}
    table = Table("id", "user", "name", "role", "created", "expires", "last used", "state")
    for r in rows:
        table.add_row(r.id, names.get(r.user_id, "?"), r.name, r.role, when(r.created_at), when(r.expires_at),
                      when(r.last_used_at), "revoked" if r.revoked_at else "active")
    out.print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (from `bastion admin token list`).")],
    config: ConfigOpt = Path("bastion.yaml"),
    admin_url: AdminUrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke an admin API token (at once)."""
    from bastion.store import StoreError, admins

    api = remote(admin_url, token)
    if api is not None:
        done = api.call("POST", f"/api/v1/admin-tokens/{token_id}/revoke")
        if as_json:
            print_json(done)
        else:
            out.print(f"revoked admin token {token_id} via {api.url}", markup=False)
        return
    with configured_store(config) as store, store.write() as session:
        try:
            row = admins.revoke_token(session, token_id)
        except StoreError as exc:
            raise fail(str(exc)) from None
        _audit(session, "token.revoke", f"token:{row.id}")
    out.print(f"revoked admin token {token_id}", markup=False)
