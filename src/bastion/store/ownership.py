"""Learned ownership in the store: which consumer created which object.

The access stage learns *creator -> object id* from the operations that create objects and
refuses other consumers' requests for them (``stages/access/ledger.py`` keeps the worker's
cache and writes in the background). These are the ``ownership`` table's reads and writes;
an object already recorded keeps its first creator, whichever worker or instance writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bastion.stages.access.ledger import Entry
from bastion.store.engine import Store
from bastion.store.models import Ownership

#: Longest key and object id the table holds (``String(255)``); the stage learns no longer id.
MAX_ID = 255


def owner_of(session: Session, key: str, object_id: str) -> str | None:
    """The consumer that created ``object_id`` of ``key`` (``service/kind``), or ``None``."""
    if len(object_id) > MAX_ID:
        return None
    return session.execute(
        select(Ownership.consumer_id).where(Ownership.route_key == key, Ownership.object_id == object_id)
    ).scalar_one_or_none()


def record(session: Session, entries: Sequence[Entry]) -> None:
    """Record each ``(key, object id, consumer)``; one already recorded is left as it is (the
    first creator wins), so concurrent writers never fail on each other's rows."""
    rows = [
        {"route_key": key, "object_id": object_id, "consumer_id": consumer}
        for key, object_id, consumer in dict.fromkeys(entries)
        if len(key) <= MAX_ID and len(object_id) <= MAX_ID
    ]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Ownership).values(rows).on_conflict_do_nothing(index_elements=["route_key", "object_id"])
    session.execute(statement)


class StoreOwnership:
    """The access stage's ownership repository over the worker's store (blocking: the ledger
    calls it in a thread). The store is the worker's: the services close it, not this."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def owner_of(self, key: str, object_id: str) -> str | None:
        with self.store.read() as session:
            return owner_of(session, key, object_id)

    def record(self, entries: Sequence[Entry]) -> None:
        with self.store.write() as session:
            record(session, entries)

    def close(self) -> None:
        return None

