"""``bastion admin ...``: the control plane's own accounts, on the store the configuration
names (these bootstrap the admin API, so they do not go through it).

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
) -> None:
    """Create an admin user; its one-time password is the last line of the output."""
    from bastion.control.accounts.roles import Role
    from bastion.store import StoreError, admins

    chosen = _role(role)
    assert isinstance(chosen, Role)
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
def list_(config: ConfigOpt = Path("bastion.yaml")) -> None:
    """List admin users, their roles and state."""
    from bastion.store import admins
    from bastion.store.models import utcnow

    with configured_store(config) as store, store.read() as session:
        users = admins.list_all(session)
    now = utcnow()
    table = Table("name", "role", "totp", "state", "last login")
    for u in users:
        state = "disabled" if u.disabled else ("locked" if u.locked_until and u.locked_until > now else "active")
        table.add_row(u.name, u.role, "yes" if u.totp_secret else "no", state, when(u.last_login_at))
    out.print(table)


@admin_app.command("reset-password")
def reset_password(
    name: Annotated[str, typer.Argument(help="The admin user.")],
    config: ConfigOpt = Path("bastion.yaml"),
) -> None:
    """Give an admin user a new one-time password (and lift a lockout); ends their sessions."""
    from bastion.store import StoreError, admins, websessions

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


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Argument(help="The admin user the token acts as.")],
    name: Annotated[str, typer.Option("--name", help="What the token is for.")] = "cli",
    role: Annotated[str | None, typer.Option("--role", help="A lower role than the user's (default: theirs).")] = None,
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime: 90d, 24h, 30m (default: none).")] = None,
    config: ConfigOpt = Path("bastion.yaml"),
) -> None:
    """Create an admin API token; the token is the last line of the output, shown once."""
    from bastion.control.accounts.roles import Role
    from bastion.store import StoreError, admins

    chosen = _role(role) if role is not None else None
    assert chosen is None or isinstance(chosen, Role)
    ttl = parse_duration(expires, "--expires") if expires else None
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
def token_list(config: ConfigOpt = Path("bastion.yaml")) -> None:
    """List admin API tokens by id (never the tokens themselves)."""
    from bastion.store import admins
    from bastion.store.models import AdminUser

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
) -> None:
    """Revoke an admin API token (at once)."""
    from bastion.store import StoreError, admins

    with configured_store(config) as store, store.write() as session:
        try:
            row = admins.revoke_token(session, token_id)
        except StoreError as exc:
            raise fail(str(exc)) from None
        _audit(session, "token.revoke", f"token:{row.id}")
    out.print(f"revoked admin token {token_id}", markup=False)
