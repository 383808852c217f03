"""Fixtures shared by the test packages: the demo API as a real upstream on loopback, the
durable store on SQLite and on a real PostgreSQL server, and a real redis-server for tests
that run several gateway instances against one."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.config.model import StoreSettings
from bastion.demo.server import DemoServer
from tests.pgproc import PostgresProcess, require_postgres
from tests.state.redisproc import RedisProcess, require_redis

#: The files that keep an xdist worker busy longest, slowest first: the sum of their tests'
#: setup, call and teardown in a full run (``pytest --durations=0``), the top 24 of 7,970
#: worker-seconds on a loaded machine. ``--dist loadfile`` hands out whole files, and xdist's
#: own order (most tests first) left slow files with few tests (end-to-end runs, the
#: supervisor's, the browser's) for the end, where one worker finished them while the other
#: idled (about 3% of the run). Handed out first, they run while the many short files fill
#: the gaps (longest first, the usual rule for balancing). A file missing here (a new slow
#: one) only costs time, never a result; a moved one is caught by tests/test_file_order.py.
SLOWEST_FILES: tuple[str, ...] = (
    "tests/cli/test_store_cli.py",
    "tests/cli/test_cli_defaults.py",
    "tests/control/test_portal.py",
    "tests/tester/scan/test_authn.py",
    "tests/cli/test_cli_remote.py",
    "tests/control/test_dashboard.py",
    "tests/cli/test_admin_remote.py",
    "tests/cli/test_logs_cli.py",
    "tests/stages/login/test_login_gateway.py",
    "tests/tester/scan/test_cli.py",
    "tests/control/test_admin_auth.py",
    "tests/tester/test_fail_on.py",
    "tests/tester/scan/test_safety.py",
    "tests/stages/graphql/test_graphql_gateway.py",
    "tests/stages/ratelimit/test_plans.py",
    "tests/e2e/test_tls.py",
    "tests/oauth/test_oauth_e2e.py",
    "tests/tester/scan/test_clinic_loop.py",
    "tests/tester/scan/test_market_loop.py",
    "tests/proxy/test_cl0.py",
    "tests/tester/scan/test_closed_loop.py",
    "tests/e2e/test_detection_e2e.py",
    "tests/e2e/test_audit_log.py",
    "tests/control/test_supervisor.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the files for xdist (``--no-loadscope-reorder`` keeps this order): those of
    ``SLOWEST_FILES`` first, in its order, then the rest by their number of tests, most first
    (xdist's own order). A file's tests stay together and in their order (a stable sort)."""
    rank = {path: i for i, path in enumerate(SLOWEST_FILES)}
    tests_in = Counter(item.nodeid.split("::", 1)[0] for item in items)

    def key(item: pytest.Item) -> tuple[int, int]:
        path = item.nodeid.split("::", 1)[0]
        return rank.get(path, len(rank)), -tests_in[path]

    items.sort(key=key)


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
