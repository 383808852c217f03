"""Consumers: create, find, list, delete, and the sync of those declared in the configuration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session

from bastion.config.model import Consumer as DeclaredConsumerSettings
from bastion.store.errors import ConsumerExists, DeclaredConsumer, UnknownConsumer
from bastion.store.generation import bump
from bastion.store.models import ApiKey, Consumer, utcnow


def find(session: Session, name: str) -> Consumer | None:
    return session.execute(select(Consumer).where(Consumer.name == name)).scalar_one_or_none()


def get(session: Session, name: str) -> Consumer:
    """The consumer named ``name``; :class:`UnknownConsumer` if there is none."""
    consumer = find(session, name)
    if consumer is None:
        raise UnknownConsumer(name)
    return consumer


def list_all(session: Session) -> list[Consumer]:
    return list(session.execute(select(Consumer).order_by(Consumer.name)).scalars())


def create(
    session: Session,
    name: str,
    *,
    roles: Sequence[str] = (),
    plan: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Consumer:
    """A new consumer managed in the store (not declared in the configuration)."""
    if find(session, name) is not None:
        raise ConsumerExists(name)
    consumer = Consumer(name=name, roles=list(roles), plan=plan, meta=dict(metadata or {}), declared=False)
    session.add(consumer)
    session.flush()
    bump(session)
    return consumer


def update(
    session: Session,
    name: str,
    *,
    roles: Sequence[str] | None = None,
    plan: str | None = None,
    clear_plan: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Consumer:
    """Change what is given of the store consumer ``name`` (``None``: unchanged; ``clear_plan``
    removes its plan). A declared consumer is refused (:class:`DeclaredConsumer`)."""
    consumer = get(session, name)
    if consumer.declared:
        raise DeclaredConsumer(name)
    if roles is not None:
        consumer.roles = list(roles)
    if plan is not None or clear_plan:
        consumer.plan = plan
    if metadata is not None:
        consumer.meta = dict(metadata)
    consumer.updated_at = utcnow()
    session.flush()
    bump(session)
    return consumer


def delete_by_name(session: Session, name: str) -> int:
    """Delete the consumer ``name`` and its credentials; how many API keys went with it.
    A declared consumer is refused (:class:`DeclaredConsumer`)."""
    consumer = get(session, name)
    if consumer.declared:
        raise DeclaredConsumer(name)
    # Explicit rather than trusting ON DELETE CASCADE (SQLite honours it only per connection).
    deleted = cast("CursorResult[Any]", session.execute(delete(ApiKey).where(ApiKey.consumer_id == consumer.id)))
    keys = deleted.rowcount
    session.delete(consumer)
    bump(session)
    return keys


def _declared_fields(settings: DeclaredConsumerSettings) -> dict[str, Any]:
    return {
        "roles": list(settings.roles),
        "plan": settings.plan,
        "meta": dict(settings.metadata),
        "ip_allow": [str(n) for n in settings.ip_allow],
        "ip_deny": [str(n) for n in settings.ip_deny],
        "certificates": [c.model_dump(exclude_none=True) for c in settings.certificates],
        "declared": True,
    }


def sync_declared(session: Session, declared: Sequence[DeclaredConsumerSettings]) -> bool:
    """Make the store's consumers match the configuration's ``consumers:``; tell whether
    anything changed (and the generation was bumped).

    A declared consumer is created, or updated to what the configuration says (taking over
    one the CLI made with the same name). One no longer declared stays, with its keys, as a
    consumer the CLI manages: removing it from the file must not silently delete keys;
    ``bastion consumers delete`` ends its access.
    """
    changed = False
    wanted = {c.name: c for c in declared}
    existing = {c.name: c for c in session.execute(select(Consumer)).scalars()}
    for name, settings in wanted.items():
        fields = _declared_fields(settings)
        consumer = existing.get(name)
        if consumer is None:
            session.add(Consumer(name=name, **fields))
            changed = True
            continue
        for field, value in fields.items():
            if getattr(consumer, field) != value:
                setattr(consumer, field, value)
                changed = True
    for name, consumer in existing.items():
        if consumer.declared and name not in wanted:
            consumer.declared = False
            consumer.updated_at = utcnow()
            changed = True
    if changed:
        session.flush()
        bump(session)
    return changed


def with_certificates(session: Session) -> list[Consumer]:
    """The consumers some client certificate identifies (mTLS), for a gateway's snapshot."""
    return [c for c in session.execute(select(Consumer).order_by(Consumer.name)).scalars() if c.certificates]


def add_certificate(session: Session, name: str, matcher: dict[str, str]) -> bool:
    """Map the client certificates ``matcher`` names (one of ``fingerprint``, ``subject``,
    ``san``) to the store consumer ``name``; ``False`` when it already had it. A declared
    consumer is refused (:class:`DeclaredConsumer`): the configuration is its source."""
    consumer = get(session, name)
    if consumer.declared:
        raise DeclaredConsumer(name)
    if matcher in consumer.certificates:
        return False
    # A new list: SQLAlchemy sees a JSON column change only when it is assigned.
    consumer.certificates = [*consumer.certificates, dict(matcher)]
    consumer.updated_at = utcnow()
    session.flush()
    bump(session)
    return True


def remove_certificate(session: Session, name: str, matcher: dict[str, str]) -> None:
    """Unmap ``matcher`` (as stored) from the store consumer ``name``; gateways stop
    accepting those certificates as its at their next poll of the generation counter."""
    consumer = get(session, name)
    if consumer.declared:
        raise DeclaredConsumer(name)
    consumer.certificates = [m for m in consumer.certificates if m != matcher]
    consumer.updated_at = utcnow()
    session.flush()
    bump(session)
