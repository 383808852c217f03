"""The durable store: consumers, API keys, OAuth clients, signing keys, learned ownership.

SQLite (a file beside the configuration) by default, PostgreSQL when several instances
share it; SQLAlchemy 2 with the Alembic migrations shipped in ``migrations/``, applied by
:func:`open_store`. Nothing on the request path touches it: workers load snapshots from it
in a thread and poll its generation counter.
"""

from bastion.store import adminaudit, admins, consumers, keys, websessions
from bastion.store.engine import Store, open_store
from bastion.store.errors import (
    ConsumerExists,
    DeclaredConsumer,
    StoreError,
    StoreUnavailable,
    UnknownConsumer,
    UnknownKey,
)

__all__ = [
    "ConsumerExists",
    "DeclaredConsumer",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "UnknownConsumer",
    "UnknownKey",
    "adminaudit",
    "admins",
    "consumers",
    "keys",
    "open_store",
    "websessions",
]
