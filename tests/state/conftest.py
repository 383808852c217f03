"""Fixtures of the state tests: a real redis-server, and each backend built on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .redisproc import RedisProcess, require_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    """One redis-server for the session (tests that kill it use their own)."""
    require_redis()
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.stop()
