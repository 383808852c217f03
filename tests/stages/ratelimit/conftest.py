"""Redis for the rate limit tests: the session's server (emptied per test), or a test's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.state.redisproc import RedisProcess, require_redis


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    """The session's redis-server, emptied for this test."""
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A redis-server of this test alone (it kills and restarts it)."""
    require_redis()
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.stop()
