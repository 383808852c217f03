"""``/api/v1/blocks`` against a real gateway on a real redis-server: a detector's block is
listed with its detector, time left and alert, and lifting it lets the client in again
(recorded in the admin audit trail); with the memory backend both answer 409 saying why."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from bastion.testing import GatewayProcess, RawResponse, parse_one_response, raw_request
from tests.proxy.scripted import ScriptedUpstream
from tests.state.redisproc import RedisProcess


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


def _config(upstream: ScriptedUpstream, redis: RedisProcess | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "trusted_proxies": ["127.0.0.1/32"]},
        "services": [{"name": "api", "upstream": {"targets": [upstream.url]},
                      "routes": [{"path": "/", "prefix": True, "public": True}]}],
        "detectors": {"enabled": True, "scanner": {"probe_threshold": 3, "action": "block", "block_ttl": "10m"}},
    }
    if redis is not None:
        cfg["backends"] = {"state": "redis", "redis": {"url": redis.url}}
    return cfg


def _get(gw: GatewayProcess, ip: str, target: str) -> RawResponse:
    data = f"GET {target} HTTP/1.1\r\nHost: shop\r\nX-Forwarded-For: {ip}\r\nConnection: close\r\n\r\n".encode()
    return parse_one_response(raw_request(gw.host, gw.port, data))[0]


def _eventually(check: Any, timeout: float = 15.0) -> Any:
    """``check()`` until it is truthy or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(0.1)
        value = check()
    return value


def test_list_and_lift_a_block(upstream: ScriptedUpstream, redis_url: str, redis_server: RedisProcess) -> None:
    """Three probes block a scanner's IP; GET /blocks lists it (detector scanner, under ten
    minutes left, the alert that set it); a viewer may not lift it (403); an operator's DELETE
    lifts it, the gateway serves the IP again, the block is no longer listed, a second lift
    is 404, and the admin audit trail holds the lift with what it was."""
    scanner = "203.0.113.66"
    with GatewayProcess(_config(upstream, redis_server)) as gw:
        for target in ("/.env", "/.git/config", "/wp-admin/"):
            _get(gw, scanner, target)
        assert _eventually(lambda: _get(gw, scanner, "/products").status == 403)
        viewer, op = gw.admin_token("viewer"), gw.admin_token("operator")

        def listed() -> list[dict[str, Any]]:
            status, body = gw.admin("GET", "/api/v1/blocks", token=viewer)
            assert status == 200, body
            return [b for b in body["items"] if b["value"] == scanner]

        (block,) = _eventually(listed)
        assert block["kind"] == "ip" and block["detector"] == "scanner" and 0 < block["expires_in"] <= 600
        assert block["alert"]["id"] and "probe" in block["alert"]["summary"]
        path = f"/api/v1/blocks/ip/{scanner}"
        assert gw.admin("DELETE", path, token=viewer)[0] == 403
        status, lifted = gw.admin("DELETE", path, token=op)
        assert status == 200 and lifted["lifted"]["detector"] == "scanner"
        assert _eventually(lambda: _get(gw, scanner, "/products").status == 200)
        assert listed() == []
        assert gw.admin("DELETE", path, token=op)[0] == 404
        assert gw.admin("DELETE", "/api/v1/blocks/planet/x", token=op)[0] == 404
        trail = gw.admin("GET", "/api/v1/admin-audit?action=block.lift", token=gw.admin_token("admin"))[1]["items"]
        assert [(e["target"], e["before"]["detector"]) for e in trail] == [(f"block:ip:{scanner}", "scanner")]


def test_blocks_need_a_shared_backend(upstream: ScriptedUpstream) -> None:
    """With backends.state: memory the blocks are in the workers: list and lift answer 409,
    saying so and what to configure."""
    with GatewayProcess(_config(upstream, None)) as gw:
        for method, path in (("GET", "/api/v1/blocks"), ("DELETE", "/api/v1/blocks/ip/192.0.2.1")):
            status, body = gw.admin(method, path, token=gw.admin_token("operator"))
            assert status == 409 and "backends: {state: redis}" in body["detail"], body
