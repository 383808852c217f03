"""The generation counter: one integer the data plane polls to know its snapshot is current.

Every write a worker must notice (a key created, revoked or rotated, a consumer changed or
deleted) bumps it in the same transaction, so a worker that sees the new value also sees
the change.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from bastion.store.models import Generation


def bump(session: Session) -> None:
    """Bump the counter, inside the caller's transaction."""
    session.execute(update(Generation).where(Generation.id == 1).values(value=Generation.value + 1))
