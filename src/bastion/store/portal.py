"""Developer-portal accounts: one login per consumer's developer, made by an invitation
(``bastion consumers invite``) or, where the portal allows it, by registration.

An invitation is a random value shown once, as a link; the store keeps its keyed hash and
when it lapses. Accepting it sets the account's first password and spends it. An account
made by invitation has no usable password until then (an unguessable placeholder hash).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion.control.accounts import passwords, tokens
from bastion.store import consumers
from bastion.store.errors import StoreError
from bastion.store.models import Consumer, PortalAccount, utcnow

#: A login is an e-mail address or a plain name; kept printable, without spaces, and short.
_LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+@-]{0,254}$")
#: An invitation lasts at most this long.
MAX_INVITE_TTL = timedelta(days=30)


class AccountExists(StoreError):
    pass


class UnknownAccount(StoreError):
    pass


def check_login(login: str) -> str:
    """``login`` normalised (lower case, trimmed), or :class:`StoreError` saying what is wrong."""
    value = login.strip().lower()
    if not _LOGIN.match(value):
        raise StoreError(f"{login!r} is not a portal login (an e-mail address or a name: letters, digits, "
                         "_ . + @ -, at most 255, no spaces)")
    return value


def get(session: Session, account_id: str) -> PortalAccount | None:
    return session.get(PortalAccount, account_id)


def by_login(session: Session, login: str) -> PortalAccount | None:
    return session.execute(
        select(PortalAccount).where(PortalAccount.login == login.strip().lower())).scalar_one_or_none()


def consumer_of(session: Session, account: PortalAccount) -> Consumer:
    consumer = session.get(Consumer, account.consumer_id)
    if consumer is None:  # the foreign key cascades; say so rather than crash
        raise StoreError(f"the portal account {account.login!r} belongs to no consumer")
    return consumer


def invite(session: Session, pepper: bytes, consumer_name: str, login: str, ttl: timedelta,
           now: datetime | None = None) -> tuple[PortalAccount, str]:
    """An invitation for ``login`` to manage ``consumer_name``'s keys: the account (made, or
    given a fresh invitation when it exists for that consumer), and the one-time token."""
    if ttl <= timedelta(0) or ttl > MAX_INVITE_TTL:
        raise StoreError(f"an invitation lasts more than 0 seconds and at most {MAX_INVITE_TTL.days} days")
    now = now or utcnow()
    consumer = consumers.get(session, consumer_name)
    login = check_login(login)
    account = by_login(session, login)
    if account is not None and account.consumer_id != consumer.id:
        raise AccountExists(f"the portal login {login!r} belongs to another consumer")
    if account is None:
        account = PortalAccount(consumer_id=consumer.id, login=login, must_change_password=True, failed_logins=0,
                                disabled=False, created_at=now,
                                password_hash=passwords.hash_password(tokens.new_secret_value()))
        session.add(account)
    token = tokens.new_secret_value()
    account.invite_hash = tokens.keyed_hash(pepper, token)
    account.invite_expires_at = now + ttl
    session.flush()
    return account, token


#: A password-reset link lasts at most this long (it opens an account that is in use).
MAX_RESET_TTL = timedelta(days=7)


def reset_link(session: Session, pepper: bytes, login: str, ttl: timedelta,
               now: datetime | None = None) -> tuple[PortalAccount, str]:
    """A one-time link for ``login``'s developer to choose a new password (issued by an
    operator: the developer forgot theirs): the account and the token, shown once.

    It uses the invitation's columns (a keyed hash and an expiry), so a newer link replaces an
    older one and setting the password spends it. Unlike an invitation's, the account's
    current password keeps working until then: issuing a link locks nobody out."""
    if ttl <= timedelta(0) or ttl > MAX_RESET_TTL:
        raise StoreError(f"a password-reset link lasts more than 0 seconds and at most {MAX_RESET_TTL.days} days")
    account = by_login(session, login)
    if account is None:
        raise UnknownAccount(f"no portal account has the login {login.strip().lower()!r}")
    if account.disabled:
        raise StoreError(f"the portal account {account.login!r} is disabled")
    token = tokens.new_secret_value()
    account.invite_hash = tokens.keyed_hash(pepper, token)
    account.invite_expires_at = (now or utcnow()) + ttl
    session.flush()
    return account, token


def password_usable(account: PortalAccount) -> bool:
    """Whether the account's password may sign in: not while an invitation is pending (nobody
    knows the placeholder), but still while a reset link is (the developer may remember it)."""
    return account.invite_hash is None or not account.must_change_password


def by_invitation(session: Session, pepper: bytes, token: str, now: datetime) -> PortalAccount | None:
    """The account a live invitation ``token`` is for (``None``: unknown, spent or lapsed)."""
    if not token or len(token) > 128:
        return None
    account = session.execute(
        select(PortalAccount).where(PortalAccount.invite_hash == tokens.keyed_hash(pepper, token))
    ).scalar_one_or_none()
    if account is None or account.disabled or account.invite_expires_at is None or account.invite_expires_at <= now:
        return None
    return account


def spend_invitation(account: PortalAccount) -> None:
    account.invite_hash = None
    account.invite_expires_at = None


def register(session: Session, login: str, password: str, plan: str | None, now: datetime | None = None
             ) -> PortalAccount:
    """A new consumer named after ``login`` on ``plan``, and its portal account with this
    password (policy checked: :class:`StoreError` naming the rule it breaks)."""
    login = check_login(login)
    problem = passwords.policy_error(password, login.split("@")[0])
    if problem is not None:
        raise StoreError(problem)
    if by_login(session, login) is not None:
        raise AccountExists(f"the portal login {login!r} is taken")
    name = re.sub(r"[^A-Za-z0-9_.@-]", "-", login)[:128]
    if consumers.find(session, name) is not None:
        raise AccountExists(f"the portal login {login!r} is taken")
    consumer = consumers.create(session, name, plan=plan, metadata={"registered": "portal"})
    account = PortalAccount(consumer_id=consumer.id, login=login, must_change_password=False, failed_logins=0,
                            disabled=False, created_at=now or utcnow(), password_hash=passwords.hash_password(password))
    session.add(account)
    session.flush()
    return account


def list_for(session: Session, consumer: Consumer) -> list[PortalAccount]:
    return list(session.execute(
        select(PortalAccount).where(PortalAccount.consumer_id == consumer.id).order_by(PortalAccount.login)).scalars())
