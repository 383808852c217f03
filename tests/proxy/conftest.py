"""Fixtures of the proxy tests: a scripted upstream and real gateway processes in front of it.

The processes are shared (session scope) to keep the suite fast, so tests tell their own
traffic apart with a unique ``token`` in the request target.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from bastion.testing import GatewayProcess

from .scripted import ScriptedUpstream


def gateway_config(upstream: str | list[str], *, routes: list[dict[str, Any]] | None = None,
                   upstream_options: dict[str, Any] | None = None,
                   listen: dict[str, Any] | None = None) -> dict[str, Any]:
    """A one-service config with an access log; a public catch-all route unless ``routes``."""
    targets = [upstream] if isinstance(upstream, str) else upstream
    return {
        "listen": {"host": "127.0.0.1", **(listen or {})},
        "access_log": {"path": "access.log"},
        "services": [{
            "name": "api",
            "upstream": {"targets": targets, **(upstream_options or {})},
            "routes": routes if routes is not None else [{"path": "/", "prefix": True, "public": True}],
        }],
    }


#: Upstream settings of the shared gateway: short timeouts; no circuit breaker, so that
#: tests that make the upstream fail cannot make the next tests fail.
SHARED_UPSTREAM = {
    "timeouts": {"connect": 1, "read": 1.5, "total": 20},
    "retries": 1,
    "circuit_breaker": {"enabled": False},
}


@pytest.fixture(scope="session")
def upstream() -> Iterator[ScriptedUpstream]:
    """The scripted upstream shared by the session."""
    with ScriptedUpstream() as server:
        yield server


@pytest.fixture(scope="session")
def gateway(upstream: ScriptedUpstream) -> Iterator[GatewayProcess]:
    """One worker in front of :func:`upstream`: a public catch-all, and ``/limited`` that
    takes bodies of at most 1000 bytes."""
    config = gateway_config(
        upstream.url,
        routes=[
            {"path": "/", "prefix": True, "public": True},
            {"path": "/limited", "prefix": True, "public": True, "max_body_bytes": 1000},
        ],
        upstream_options=SHARED_UPSTREAM,
    )
    with GatewayProcess(config, workers=1) as gw:
        yield gw


@pytest.fixture(scope="session")
def strict_gateway(upstream: ScriptedUpstream) -> Iterator[GatewayProcess]:
    """A gateway with a few declared routes and no catch-all: ``/public`` (a prefix, any
    method but TRACE), ``/admin`` (GET only) and ``/items/{id}`` (GET only)."""
    config = gateway_config(upstream.url, upstream_options=SHARED_UPSTREAM, routes=[
        {"path": "/public", "prefix": True, "public": True},
        {"path": "/admin", "methods": ["GET"], "public": True},
        {"path": "/items/{id}", "methods": ["GET"], "public": True},
    ])
    with GatewayProcess(config) as gw:
        yield gw


@pytest.fixture
def token() -> str:
    """A string unique to the test, to find its requests in the upstream's record."""
    return "t" + uuid.uuid4().hex[:16]
