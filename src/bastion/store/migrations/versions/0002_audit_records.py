"""The audit log's table (issue 17): one row per request, written in batches by the workers.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bastion.store.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("instance", sa.String(128), nullable=False),
        sa.Column("worker", sa.Integer(), nullable=False),
        sa.Column("consumer", sa.String(128), nullable=True),
        sa.Column("credential", sa.String(128), nullable=True),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("route", sa.String(255), nullable=True),
        sa.Column("service", sa.String(128), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("bytes_in", sa.BigInteger(), nullable=False),
        sa.Column("bytes_out", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("upstream_ms", sa.Float(), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(64), nullable=True),
        sa.Column("rule", sa.String(128), nullable=True),
        sa.Column("category", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(128), nullable=True),
        sa.Column("ratelimit", sa.Text(), nullable=True),
        sa.Column("tls", sa.String(16), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("upstream", sa.String(255), nullable=True),
        sa.Column("upstream_error", sa.String(64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_records_ts", "audit_records", ["ts"])
    op.create_index("ix_audit_records_consumer", "audit_records", ["consumer"])
    op.create_index("ix_audit_records_route", "audit_records", ["route"])
    op.create_index("ix_audit_records_decision", "audit_records", ["decision"])


def downgrade() -> None:
    op.drop_table("audit_records")
