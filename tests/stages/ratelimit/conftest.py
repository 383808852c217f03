"""Redis for the rate limit tests: the session's server (emptied per test), or a test's own;
and the scripted upstream behind their gateways."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.proxy.scripted import ScriptedUpstream
from tests.state.redisproc import RedisProcess, require_redis


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    """A scripted upstream (it echoes and records what reaches it)."""
    with ScriptedUpstream() as server:
        yield server


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
