"""Alembic's entry point for the store's migrations, run only by :func:`bastion.store.migrate`.

That function hands over a connection already inside the transaction (and, on PostgreSQL,
the advisory lock) the whole upgrade runs in; this file never opens one of its own.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("the store's migrations run through bastion.store.migrate(), which passes a connection")
context.configure(connection=connection, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
