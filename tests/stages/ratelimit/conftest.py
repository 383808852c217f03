"""The scripted upstream behind the rate limit tests' gateways (their Redis fixtures,
``redis_url`` and ``own_redis``, are the suite's: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.proxy.scripted import ScriptedUpstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    """A scripted upstream (it echoes and records what reaches it)."""
    with ScriptedUpstream() as server:
        yield server
