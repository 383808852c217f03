"""The admin audit trail: every write on the control plane (admin API, dashboard, portal,
the CLI's store commands), with who, what, before/after and from where. Values are what the
objects look like to a viewer: never a secret (keys, tokens and passwords are shown once
and never recorded)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion.store.models import AdminAuditEntry, utcnow


def record(session: Session, *, actor: str, via: str, action: str, target: str, source: str,
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> AdminAuditEntry:
    """Add an entry to ``session`` (committed with the change it describes, or not at all)."""
    entry = AdminAuditEntry(ts=utcnow(), actor=actor[:128], via=via, action=action, target=target[:255],
                            before=before, after=after, source=source[:64])
    session.add(entry)
    return entry


def query(session: Session, *, since: datetime | None = None, actor: str | None = None, action: str | None = None,
          limit: int = 100) -> list[AdminAuditEntry]:
    """Newest first."""
    stmt = select(AdminAuditEntry).order_by(AdminAuditEntry.id.desc()).limit(max(1, min(limit, 1000)))
    if since is not None:
        stmt = stmt.where(AdminAuditEntry.ts >= since)
    if actor is not None:
        stmt = stmt.where(AdminAuditEntry.actor == actor)
    if action is not None:
        stmt = stmt.where(AdminAuditEntry.action == action)
    return list(session.execute(stmt).scalars())


def as_dict(entry: AdminAuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "ts": entry.ts.isoformat(), "actor": entry.actor, "via": entry.via,
            "action": entry.action, "target": entry.target, "before": entry.before, "after": entry.after,
            "source": entry.source}
