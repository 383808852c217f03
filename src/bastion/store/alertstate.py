"""Alert status changes (dashboard, admin API, CLI): open -> acknowledged -> resolved, with
who did it and when. Reopening is allowed (a resolved incident that was not)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bastion.store.errors import StoreError
from bastion.store.models import AlertRecord, utcnow

STATUSES = ("open", "acknowledged", "resolved")


def set_status(session: Session, alert_id: str, status: str, who: str) -> tuple[AlertRecord, str]:
    """Set an alert's status; the alert and its previous status."""
    if status not in STATUSES:
        raise StoreError(f"{status!r} is not an alert status; choose one of {', '.join(STATUSES)}")
    alert = session.get(AlertRecord, alert_id)
    if alert is None:
        raise StoreError(f"no alert has the id {alert_id!r}")
    before = alert.status
    alert.status = status
    alert.handled_by = who
    alert.handled_at = utcnow()
    return alert, before
