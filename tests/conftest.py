"""Fixtures shared by the test packages: the demo API as a real upstream on loopback, the
durable store on SQLite and on a real PostgreSQL server, and a real redis-server for tests
that run several gateway instances against one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.config.model import StoreSettings
from bastion.demo.server import DemoServer
from tests.pgproc import PostgresProcess, require_postgres
from tests.state.redisproc import RedisProcess, require_redis


@pytest.fixture(scope="module")
def demo_api() -> Iterator[DemoServer]:
    """The demo bookstore API, served by uvicorn on a free loopback port."""
    server = DemoServer("127.0.0.1", 0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresProcess]:
    """One PostgreSQL server for the session (each test takes a database of its own); skipped,
    or failed under BASTION_REQUIRE_POSTGRES=1, when PostgreSQL is not installed."""
    server = PostgresProcess(require_postgres()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty store: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bastion.db'}"
    server: PostgresProcess = request.getfixturevalue("postgres")
    return server.create_database(f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def store_settings(store_url: str, tmp_path: Path) -> StoreSettings:
    """Settings of a new, empty store (either kind) with its pepper file in the test's folder."""
    return StoreSettings(url=store_url, pepper_file=tmp_path / "bastion.pepper")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    """One redis-server on a free loopback port for the session (skipped without
    redis-server unless BASTION_REQUIRE_REDIS=1); tests flush what they use."""
    require_redis()
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    """The session's redis-server (the nearest ``redis_server``), emptied for this test."""
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A redis-server of this test alone (it may kill and restart it)."""
    require_redis()
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.stop()
