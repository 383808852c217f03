"""Browser sessions of the dashboard and the portal.

The cookie carries 256 random bits; the store keeps their keyed hash. A session is made
only after the password is right (so a cookie planted before the login is never promoted:
no session fixation), has an absolute expiry and an idle timeout, and carries its own CSRF
token. Logging out, changing a password or disabling an account deletes sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bastion.control.accounts import tokens
from bastion.store.models import WebSession


@dataclass(frozen=True)
class SessionPolicy:
    ttl: timedelta = timedelta(hours=8)
    idle: timedelta = timedelta(minutes=30)


def open_session(session: Session, pepper: bytes, kind: str, subject_id: str, source: str, mfa: bool,
                 now: datetime, policy: SessionPolicy) -> tuple[WebSession, str]:
    """A new session; the cookie value, to set once."""
    cookie = tokens.new_secret_value()
    row = WebSession(id=tokens.keyed_hash(pepper, cookie), kind=kind, subject_id=subject_id,
                     csrf=tokens.new_secret_value(), mfa=mfa, created_at=now, expires_at=now + policy.ttl,
                     last_seen_at=now, source=source[:64])
    session.add(row)
    session.flush()
    return row, cookie


def find(session: Session, pepper: bytes, kind: str, cookie: str, now: datetime,
         policy: SessionPolicy) -> WebSession | None:
    """The live session of ``cookie``, its last use updated; expired ones are deleted."""
    if not cookie or len(cookie) > 128:
        return None
    row = session.get(WebSession, tokens.keyed_hash(pepper, cookie))
    if row is None or row.kind != kind:
        return None
    if row.expires_at <= now or row.last_seen_at + policy.idle <= now:
        session.delete(row)
        return None
    row.last_seen_at = now
    return row


def close(session: Session, row: WebSession) -> None:
    session.delete(row)


def close_all(session: Session, kind: str, subject_id: str) -> None:
    """End every session of one account (password changed, account disabled)."""
    session.execute(delete(WebSession).where(WebSession.kind == kind, WebSession.subject_id == subject_id))


def purge_expired(session: Session, now: datetime) -> None:
    session.execute(delete(WebSession).where(WebSession.expires_at <= now))


def count(session: Session, kind: str, subject_id: str) -> int:
    return len(session.execute(
        select(WebSession.id).where(WebSession.kind == kind, WebSession.subject_id == subject_id)).all())
