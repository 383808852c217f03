"""``action: block``: a detector's incident puts its subject on the block list, in the
state backend, and every gateway sharing that backend refuses it (403 problem+json,
``blocked.<detector>``) within about a second, while other clients are served. Two real
gateways on one real redis-server, in front of a real upstream."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from bastion.testing import GatewayProcess, RawResponse, parse_one_response, raw_request
from tests.detect.webhook import WebhookServer
from tests.proxy.scripted import ScriptedUpstream
from tests.proxy.util import assert_problem
from tests.state.redisproc import RedisProcess


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


def config(upstream: ScriptedUpstream, redis: RedisProcess, hook: WebhookServer) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "trusted_proxies": ["127.0.0.1/32"]},
        "access_log": {"path": "access.log"},
        "backends": {"state": "redis", "redis": {"url": redis.url}},
        "services": [{"name": "api", "upstream": {"targets": [upstream.url]},
                      "routes": [{"path": "/", "prefix": True, "public": True}]}],
        "detectors": {
            "enabled": True,
            "scanner": {"probe_threshold": 3, "action": "block", "block_ttl": "10m"},
            "webhooks": [{"url": hook.url}],
        },
    }


def get(gw: GatewayProcess, ip: str, target: str) -> RawResponse:
    data = (f"GET {target} HTTP/1.1\r\nHost: shop\r\nX-Forwarded-For: {ip}\r\nConnection: close\r\n\r\n").encode()
    return parse_one_response(raw_request(gw.host, gw.port, data))[0]


def refused_within(gw: GatewayProcess, ip: str, timeout: float = 5.0) -> RawResponse:
    """The first answer to ``ip`` that is not 200, asking until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        resp = get(gw, ip, "/products")
        if resp.status != 200 or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def test_a_block_holds_on_every_gateway_sharing_redis(
    upstream: ScriptedUpstream, redis_url: str, redis_server: RedisProcess
) -> None:
    """Three probes to gateway A block the scanner's IP: A and then B (another gateway on the
    same Redis, which saw none of its traffic) refuse it with 403 ``blocked.scanner``
    problem+json, and the request never reaches the upstream; another IP is still served.
    (``redis_url`` empties the worker's redis-server first: a scanner incident of the same IP
    left by another test, tests/control/test_api_blocks.py, would hold back this one's alert.)"""
    scanner, customer = "203.0.113.66", "192.0.2.10"
    with WebhookServer() as hook, \
            GatewayProcess(config(upstream, redis_server, hook)) as gw_a, \
            GatewayProcess(config(upstream, redis_server, hook)) as gw_b:
        assert get(gw_b, scanner, "/products").status == 200  # not blocked yet
        for target in ("/.env", "/.git/config", "/wp-admin/"):
            get(gw_a, scanner, target)
        assert [a.json()["action"] for a in hook.wait(1)] == ["block"]
        for gw in (gw_a, gw_b):
            resp = refused_within(gw, scanner)
            doc = assert_problem(resp, 403)
            assert doc["detail"] == "This client is blocked for a while after suspicious activity."
            record = gw.wait_for_access_record(lambda r: r.get("status") == 403)
            assert (record["blocked_by"], record["client"]) == ("blocklist", scanner)
            assert record["decisions"] == [{"stage": "blocklist", "action": "block", "reason": "blocked.scanner"}]
        before = len(upstream.records())
        assert get(gw_b, scanner, "/products").status == 403
        assert len(upstream.records()) == before
        assert get(gw_b, customer, "/products").status == 200
