"""Admin users and their API tokens in the store.

There are no default credentials: the first admin is made by ``bastion admin create``,
which prints a one-time password (replaced at first login). Tokens are shown once; only
their keyed hash is kept; a token's role is at most its user's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion.control.accounts import passwords, tokens
from bastion.control.accounts.roles import Role
from bastion.store.errors import StoreError
from bastion.store.models import AdminToken, AdminUser, utcnow

_NAME_MAX = 128


class AdminExists(StoreError):
    pass


class UnknownAdmin(StoreError):
    pass


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > _NAME_MAX or any(c.isspace() or not c.isprintable() for c in name):
        raise StoreError(f"{name!r} is not an admin name (1 to {_NAME_MAX} printable characters, no spaces)")
    return name


def create(session: Session, name: str, role: Role) -> tuple[AdminUser, str]:
    """A new admin user and its one-time password (shown once, replaced at first login)."""
    name = _check_name(name)
    if session.execute(select(AdminUser.id).where(AdminUser.name == name)).first() is not None:
        raise AdminExists(f"the admin user {name!r} already exists")
    password = passwords.one_time_password()
    user = AdminUser(name=name, role=role.label, password_hash=passwords.hash_password(password),
                     must_change_password=True, failed_logins=0, disabled=False)
    session.add(user)
    session.flush()
    return user, password


def get(session: Session, name: str) -> AdminUser | None:
    return session.execute(select(AdminUser).where(AdminUser.name == name)).scalar_one_or_none()


def require(session: Session, name: str) -> AdminUser:
    user = get(session, name)
    if user is None:
        raise UnknownAdmin(f"no admin user is named {name!r}")
    return user


def list_all(session: Session) -> list[AdminUser]:
    return list(session.execute(select(AdminUser).order_by(AdminUser.name)).scalars())


def count_active(session: Session) -> int:
    return len(session.execute(select(AdminUser.id).where(AdminUser.disabled.is_(False))).all())


def reset_password(session: Session, name: str) -> str:
    """A new one-time password for ``name`` (and its lock lifted); its second factor is kept."""
    user = require(session, name)
    password = passwords.one_time_password()
    user.password_hash = passwords.hash_password(password)
    user.must_change_password = True
    user.failed_logins = 0
    user.locked_until = None
    return password


@dataclass(frozen=True)
class ResolvedToken:
    user: AdminUser
    token: AdminToken
    role: Role


def create_token(session: Session, pepper: bytes, user: AdminUser, name: str, role: Role | None = None,
                 ttl: timedelta | None = None) -> tuple[AdminToken, str]:
    """A new token for ``user`` (its role by default, never more); the token, shown once."""
    user_role = Role.parse(user.role)
    role = user_role if role is None else role
    if not user_role.allows(role):
        raise StoreError(f"a token of {user.name!r} ({user_role.label}) cannot have the role {role.label}")
    secret, token_id = tokens.new_token()
    now = utcnow()
    row = AdminToken(id=token_id, user_id=user.id, name=name.strip() or "token", hash=tokens.keyed_hash(pepper, secret),
                     role=role.label, created_at=now, expires_at=None if ttl is None else now + ttl)
    session.add(row)
    session.flush()
    return row, secret


def resolve_token(session: Session, pepper: bytes, presented: str, now: datetime) -> ResolvedToken | None:
    """The live token ``presented`` is, with its user; ``None`` for anything else (malformed,
    unknown, revoked, expired, disabled user). Looked up by keyed hash: no comparison of
    secrets in Python."""
    if tokens.token_id(presented) is None:
        return None
    row = session.execute(
        select(AdminToken).where(AdminToken.hash == tokens.keyed_hash(pepper, presented))
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    user = session.get(AdminUser, row.user_id)
    if user is None or user.disabled:
        return None
    # The user's role may have been lowered since the token was made.
    role = min(Role.parse(row.role), Role.parse(user.role))
    return ResolvedToken(user, row, role)


def list_tokens(session: Session, user: AdminUser | None = None) -> list[AdminToken]:
    query = select(AdminToken).order_by(AdminToken.created_at)
    if user is not None:
        query = query.where(AdminToken.user_id == user.id)
    return list(session.execute(query).scalars())


def revoke_token(session: Session, token_id: str) -> AdminToken:
    row = session.get(AdminToken, token_id)
    if row is None:
        raise StoreError(f"no admin token has the id {token_id!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row
