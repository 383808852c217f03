"""API keys in the store: create (the key is shown once), list, revoke, rotate, snapshot.

Only ``HMAC-SHA-256(pepper, key)`` is kept; the key itself leaves :func:`create` and
:func:`rotate` once, to be printed, and exists nowhere else. Every change a gateway must
honour bumps the generation counter in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from bastion.stages.auth import keyformat
from bastion.store import consumers
from bastion.store.errors import StoreError, UnknownKey
from bastion.store.generation import bump
from bastion.store.models import ApiKey, Consumer, utcnow

#: Tries at a fresh key id before giving up (two keys sharing 8 random base62 characters
#: is a 1 in 2 * 10**14 event; a loop that never ends on a broken random source is worse).
_ID_TRIES = 8


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: its row, and the key itself, to be shown once and then forgotten."""

    record: ApiKey
    secret: str


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """What a gateway needs of a key that may be used now (not revoked, not expired)."""

    hash: bytes
    key_id: str
    consumer_id: str
    consumer_name: str
    scopes: tuple[str, ...]
    roles: tuple[str, ...]
    expires_at: datetime | None
    #: The consumer's own client networks (CIDRs as written), for the access stage.
    ip_allow: tuple[str, ...] = ()
    ip_deny: tuple[str, ...] = ()


def _insert(
    session: Session, pepper: bytes, consumer: Consumer, scopes: Sequence[str], expires_at: datetime | None
) -> NewKey:
    for _ in range(_ID_TRIES):
        secret = keyformat.generate()
        key_id = keyformat.key_id(secret)
        if session.get(ApiKey, key_id) is None:
            break
    else:
        raise StoreError("no unused key id found; is the system's random source broken?")
    record = ApiKey(
        id=key_id,
        consumer_id=consumer.id,
        hash=keyformat.key_hash(pepper, secret),
        prefix=keyformat.shown_prefix(secret),
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
    )
    session.add(record)
    session.flush()
    bump(session)
    return NewKey(record, secret)


def create(
    session: Session, pepper: bytes, consumer_name: str, scopes: Sequence[str], expires_at: datetime | None = None
) -> NewKey:
    """A new key for ``consumer_name`` with these scopes, valid until ``expires_at`` (or for ever)."""
    if expires_at is not None and expires_at <= utcnow():
        raise StoreError("the key would be expired already: give an expiry in the future")
    return _insert(session, pepper, consumers.get(session, consumer_name), scopes, expires_at)


def get(session: Session, key_id: str, *, for_update: bool = False) -> ApiKey:
    """The key ``key_id`` (locked until the transaction ends when ``for_update``, so two
    rotations of one key cannot both succeed); :class:`UnknownKey` if there is none."""
    key = session.get(ApiKey, key_id, with_for_update=for_update)
    if key is None:
        raise UnknownKey(key_id)
    return key


def list_keys(session: Session, consumer_name: str | None = None) -> list[tuple[ApiKey, str]]:
    """Every key (or ``consumer_name``'s), with its consumer's name, oldest first."""
    query = select(ApiKey, Consumer.name).join(Consumer, ApiKey.consumer_id == Consumer.id)
    if consumer_name is not None:
        query = query.where(ApiKey.consumer_id == consumers.get(session, consumer_name).id)
    rows = session.execute(query.order_by(ApiKey.created_at, ApiKey.id)).all()
    return [(key, name) for key, name in rows]


def revoke(session: Session, key_id: str) -> bool:
    """Revoke the key at once; false if it was revoked already."""
    key = get(session, key_id, for_update=True)
    if key.revoked_at is not None:
        return False
    key.revoked_at = utcnow()
    bump(session)
    return True


def rotate(
    session: Session, pepper: bytes, key_id: str, overlap: timedelta, expires_at: datetime | None
) -> NewKey:
    """A new key replacing ``key_id``, with its consumer and scopes; the old one keeps
    working for ``overlap`` (so clients can switch), then expires (sooner if it would anyway)."""
    old = get(session, key_id, for_update=True)
    now = utcnow()
    if old.revoked_at is not None:
        raise StoreError(f"the key {key_id!r} is revoked: create a new key instead of rotating it")
    if old.replaced_by is not None:
        raise StoreError(f"the key {key_id!r} was rotated already (replaced by {old.replaced_by!r}): rotate that one")
    if old.expires_at is not None and old.expires_at <= now:
        raise StoreError(f"the key {key_id!r} has expired: create a new key instead of rotating it")
    if expires_at is not None and expires_at <= now:
        raise StoreError("the new key would be expired already: give an expiry in the future")
    consumer = session.get(Consumer, old.consumer_id)
    if consumer is None:  # the foreign key makes this impossible; say so rather than crash
        raise StoreError(f"the key {key_id!r} belongs to no consumer")
    new = _insert(session, pepper, consumer, old.scopes, expires_at)
    end = now + overlap
    old.expires_at = end if old.expires_at is None else min(old.expires_at, end)
    old.replaced_by = new.record.id
    return new


def active(session: Session) -> list[ActiveKey]:
    """Every key usable now, with what a gateway needs to verify it without the store."""
    now = utcnow()
    query = (
        select(
            ApiKey.hash,
            ApiKey.id,
            Consumer.id,
            Consumer.name,
            ApiKey.scopes,
            Consumer.roles,
            ApiKey.expires_at,
            Consumer.ip_allow,
            Consumer.ip_deny,
        )
        .join(Consumer, ApiKey.consumer_id == Consumer.id)
        .where(ApiKey.revoked_at.is_(None), or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now))
    )
    return [
        ActiveKey(bytes(h), kid, cid, name, tuple(scopes), tuple(roles), expires, tuple(allow), tuple(deny))
        for h, kid, cid, name, scopes, roles, expires, allow, deny in session.execute(query)
    ]


def record_last_used(session: Session, used: Mapping[str, datetime]) -> None:
    """Note when keys were last used (a gateway's batch); an older time never overwrites a
    newer one another instance wrote. Not a change a gateway must notice: no bump."""
    for key_id, when in used.items():
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < when))
            .values(last_used_at=when)
        )
