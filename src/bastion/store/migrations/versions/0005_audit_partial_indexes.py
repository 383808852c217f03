"""The audit log's consumer and decision indexes hold only the rows they are queried for
(issue 17): every index is one more B-tree insert per request's record, and most records
are allowed requests, many without a consumer.

``ix_audit_records_consumer`` keeps the records that have a consumer (a query by consumer
asks for one, and both databases use the index for ``consumer = ?``); ``ix_audit_records_decision``
keeps the records that were not allowed (the dashboard's blocked requests, a query for
blocked or monitored records: those queries say ``decision != 'allowed'`` as well, so that
SQLite picks the index). A query for allowed records reads by time, as it did in practice.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: What the two indexes hold (as ``bastion.store.models`` declares them).
AUDIT_CONSUMER_INDEXED = "consumer IS NOT NULL"
AUDIT_DECISION_INDEXED = "decision != 'allowed'"


def upgrade() -> None:
    for column, where in (("consumer", AUDIT_CONSUMER_INDEXED), ("decision", AUDIT_DECISION_INDEXED)):
        op.drop_index(f"ix_audit_records_{column}", table_name="audit_records")
        op.create_index(f"ix_audit_records_{column}", "audit_records", [column],
                        sqlite_where=sa.text(where), postgresql_where=sa.text(where))


def downgrade() -> None:
    for column in ("consumer", "decision"):
        op.drop_index(f"ix_audit_records_{column}", table_name="audit_records")
        op.create_index(f"ix_audit_records_{column}", "audit_records", [column])
