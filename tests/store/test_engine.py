"""Opening the store: migrations to the one head, the schema the models expect, clear errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from bastion.config.model import StoreSettings
from bastion.store import Store, StoreUnavailable, open_store
from bastion.store.engine import MIGRATIONS
from bastion.store.models import Base

TABLES = {
    "consumers", "api_keys", "oauth_clients", "signing_keys", "ownership", "generation", "audit_records", "alerts",
    "admin_users", "admin_tokens", "portal_accounts", "web_sessions", "admin_audit", "alembic_version",
}


def test_one_head() -> None:
    """The shipped migrations have exactly one head (parallel work must chain, not branch)."""
    assert ScriptDirectory(str(MIGRATIONS)).get_heads() == ["0005"]


def test_open_creates_every_table_as_the_models_describe(store_settings: StoreSettings) -> None:
    """Opening an empty store creates every table of issues 14 and 17, and the migrated schema is the
    one the typed models describe (autogenerate finds nothing to add or change)."""
    store = open_store(store_settings)
    try:
        with store.engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) == TABLES
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        assert store.generation() == 0
        if store.url.startswith("sqlite"):  # the file holds hashes and consumers: its owner's only
            assert Path(store.url.removeprefix("sqlite:///")).stat().st_mode & 0o777 == 0o600
    finally:
        store.close()


def test_opening_again_keeps_the_data(store_settings: StoreSettings) -> None:
    """A second open finds the schema at head and migrates nothing (the counter is kept)."""
    from bastion.store import consumers

    store = open_store(store_settings)
    with store.write() as session:
        consumers.create(session, "alice")
    store.close()
    store = open_store(store_settings)
    try:
        with store.read() as session:
            assert [c.name for c in consumers.list_all(session)] == ["alice"]
        assert store.generation() == 1
    finally:
        store.close()


def test_concurrent_first_opens_migrate_once(store_settings: StoreSettings) -> None:
    """Workers starting together on an empty store all open it: the migration runs under a
    lock, so none fails on a table another just created."""
    stores = [Store(store_settings) for _ in range(4)]
    errors: list[BaseException] = []

    def ready(store: Store) -> None:
        try:
            store.ready()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ready, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert stores[0].generation() == 0
    finally:
        for s in stores:
            s.close()


def test_missing_sqlite_folder_is_named(tmp_path: Path) -> None:
    """A SQLite file in a folder that does not exist: the error names the folder."""
    settings = StoreSettings(url=f"sqlite:///{tmp_path}/nowhere/bastion.db")
    with pytest.raises(StoreUnavailable, match=r"the folder '.*/nowhere' does not exist"):
        open_store(settings)


def test_unreachable_postgresql_is_named_without_its_password() -> None:
    """A PostgreSQL server that refuses connections: the error names the store (password
    hidden) and what the driver said."""
    from bastion.testing import free_port

    url = f"postgresql://bastion:s3cret-pw@127.0.0.1:{free_port()}/bastion"
    with pytest.raises(StoreUnavailable) as info:
        open_store(StoreSettings(url=url, pepper_file=Path("/nonexistent")))
    message = str(info.value)
    assert "s3cret-pw" not in message
    assert "cannot be opened" in message and "127.0.0.1" in message
