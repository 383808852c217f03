"""Learned ownership in the store (SQLite and PostgreSQL): the first creator wins, workers
share what they learned through it, and a worker provides the access stage its ledger."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bastion.config import load_config
from bastion.config.model import StoreSettings
from bastion.errors import DependencyUnavailable
from bastion.services import WorkerIdentity, build_services
from bastion.stages.access import LEDGER_KEY, OwnershipLedger
from bastion.stages.access.ledger import consumer_key
from bastion.store import Store, open_store, ownership
from bastion.store.models import Ownership
from bastion.store.ownership import StoreOwnership
from bastion.testing import GatewayProcess
from tests.proxy.util import assert_problem, one

KEY = "shop/books"


@pytest.fixture
def store(store_settings: StoreSettings) -> Iterator[Store]:
    store = open_store(store_settings)
    try:
        yield store
    finally:
        store.close()


def test_the_first_creator_wins(store: Store) -> None:
    """Records are read back by key and id; a second record of the same object (in the same
    batch or a later one) leaves the first creator; the time of the record is kept."""
    with store.write() as session:
        ownership.record(session, [(KEY, "b-1", "id-alice"), (KEY, "b-1", "id-bob"), ("shop/authors", "b-1", "id-bob")])
    with store.write() as session:
        ownership.record(session, [(KEY, "b-1", "id-mallory"), (KEY, "b-2", "id-bob")])
    with store.read() as session:
        assert ownership.owner_of(session, KEY, "b-1") == "id-alice"
        assert ownership.owner_of(session, "shop/authors", "b-1") == "id-bob"
        assert ownership.owner_of(session, KEY, "b-2") == "id-bob"
        assert ownership.owner_of(session, KEY, "b-3") is None
        stamps = session.execute(select(Ownership.created_at)).scalars().all()
    assert len(stamps) == 3 and all(s is not None for s in stamps)


def test_ids_longer_than_the_table_holds_are_not_recorded(store: Store) -> None:
    """An object id over 255 characters is neither written (it would fail the batch on
    PostgreSQL) nor looked up; a long consumer id is kept as a digest of the column's size."""
    long_id = "x" * 256
    with store.write() as session:
        ownership.record(session, [(KEY, long_id, "id-alice"), (KEY, "ok", consumer_key("auth0|" + "9" * 60))])
    with store.read() as session:
        assert ownership.owner_of(session, KEY, long_id) is None
        assert ownership.owner_of(session, KEY, "ok") == consumer_key("auth0|" + "9" * 60)
    assert len(consumer_key("auth0|" + "9" * 60)) == 36


def test_two_workers_share_what_they_learned(store_settings: StoreSettings) -> None:
    """Worker A learns a creator (cached at once, written in the background); worker B, with
    its own store connection and an empty cache, reads it from the store."""
    stores = [open_store(store_settings), open_store(store_settings)]

    async def run() -> tuple[str | None, str | None]:
        first, second = (OwnershipLedger(StoreOwnership(s)) for s in stores)
        first.remember(KEY, "b-1", "id-alice")
        assert first.cached(KEY, "b-1") == "id-alice"
        assert await first.flush()
        found = await second.owner_of(KEY, "b-1"), await second.owner_of(KEY, "b-2")
        await first.aclose()
        await second.aclose()
        return found

    try:
        assert asyncio.run(run()) == ("id-alice", None)
    finally:
        for store in stores:
            store.close()


def test_a_store_that_cannot_be_opened_fails_closed(tmp_path: Path) -> None:
    """A read from a store that cannot be opened is DependencyUnavailable (503 for the
    request), and a write stays pending instead of being lost silently."""
    settings = StoreSettings(url=f"sqlite:///{tmp_path / 'missing' / 'bastion.db'}", pepper_file=tmp_path / "p")

    async def run() -> None:
        ledger = OwnershipLedger(StoreOwnership(Store(settings)))
        with pytest.raises(DependencyUnavailable):
            await ledger.owner_of(KEY, "b-1")
        ledger.remember(KEY, "b-1", "id-alice")
        assert not await ledger.flush()
        await ledger.aclose()

    asyncio.run(run())


LEARNING = {
    "services": [{
        "name": "shop",
        "upstream": "http://127.0.0.1:9",
        "routes": [
            {"path": "/books", "methods": ["POST"], "public": True,
             "policies": {"access": {"learn_ownership": {"kind": "books", "id_from": "header:Location"}}}},
            {"path": "/books/{id}", "methods": ["GET"], "public": True,
             "policies": {"access": {"learned_owner": {"kind": "books", "param": "id"}}}},
        ],
    }],
}


def test_the_stage_takes_its_ledger_over_the_workers_store(tmp_path: Path) -> None:
    """Started with a worker's services, a stage that learns ownership gets one ledger per
    worker, over the worker's store (``store:`` of the configuration), which nothing opens
    until the ledger reads or writes; closing the services writes what is pending first."""
    (tmp_path / "bastion.yaml").write_text(json.dumps(LEARNING))
    loaded = load_config(tmp_path / "bastion.yaml")
    config = loaded.config

    async def run() -> None:
        services = build_services(config.backends, WorkerIdentity("test", 0, 1, 0), None, config.store,
                                  config.consumers)
        for route in loaded.routes:
            for stage in route.built:
                await stage.start(services)
        ledger = services.shared(LEDGER_KEY, lambda: None)
        assert isinstance(ledger, OwnershipLedger) and isinstance(ledger.repository, StoreOwnership)
        assert ledger.repository.store is services.store
        assert services.store.url == f"sqlite:///{tmp_path / 'bastion.db'}"
        assert not (tmp_path / "bastion.db").exists()
        ledger.remember(KEY, "b-1", "id-alice")
        await services.close()

    asyncio.run(run())
    store = open_store(config.store)
    try:
        with store.read() as session:
            assert ownership.owner_of(session, KEY, "b-1") == "id-alice"
    finally:
        store.close()


def test_a_real_worker_starts_its_ownership_routes(tmp_path: Path) -> None:
    """`bastion serve` starts a configuration whose routes learn and check ownership (its
    worker provides the ledger); an anonymous request for an owned object gets 401."""
    with GatewayProcess(LEARNING, folder=tmp_path) as gw:
        resp = one(gw, "GET", "/books/b-1")  # type: ignore[arg-type]
        assert_problem(resp, 401)
