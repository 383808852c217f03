"""The alert history: each alert a row of the store's ``alerts`` table (migration 0003)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bastion.detect.alerts import Alert

if TYPE_CHECKING:
    from bastion.store import Store


def save_alert(store: Store, alert: Alert) -> None:
    """Insert ``alert`` (blocking: call it in a thread)."""
    from bastion.store.models import AlertRecord

    with store.write() as session:
        session.add(
            AlertRecord(
                id=alert.id,
                first_seen=datetime.fromtimestamp(alert.first_seen, UTC),
                last_seen=datetime.fromtimestamp(alert.last_seen, UTC),
                detector=alert.detector,
                severity=alert.severity,
                action=alert.action,
                count=alert.count,
                window_seconds=alert.window,
                summary=alert.summary,
                subject=dict(alert.subject),
                instance=alert.instance,
            )
        )
