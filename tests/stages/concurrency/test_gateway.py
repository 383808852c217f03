"""Requests in flight per consumer, through a real gateway: consumers declared in the
configuration, API keys made by ``bastion keys create``, a scripted upstream behind."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from bastion.testing import GatewayProcess
from tests.proxy.conftest import SHARED_UPSTREAM
from tests.proxy.scripted import ScriptedUpstream
from tests.proxy.util import assert_problem, build, keepalive

OPENAPI = """\
openapi: 3.1.0
info: {title: shop, version: "1"}
security: [{apiKey: []}]
paths:
  /slow:
    get: {operationId: slow, responses: {"200": {description: ok}}}
  /echo:
    get: {operationId: echo, responses: {"200": {description: ok}}}
components:
  securitySchemes:
    apiKey: {type: apiKey, in: header, name: X-API-Key}
"""


def _wait(predicate: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"never saw {what}")


@pytest.fixture
def token() -> str:
    """A marker unique to the test, in its request targets."""
    return f"t{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def shop(upstream: ScriptedUpstream) -> Iterator[tuple[GatewayProcess, dict[str, str]]]:
    """A gateway whose service lets each consumer have 2 requests in flight; API keys of
    alice and bob, accepted by the gateway once its key snapshot has them."""
    config = {
        "listen": {"host": "127.0.0.1"},
        "access_log": {"path": "access.log"},
        "consumers": [{"name": "alice"}, {"name": "bob"}],
        "services": [{
            "name": "shop", "openapi": "shop.yaml",
            "upstream": {"targets": [upstream.url], **SHARED_UPSTREAM,
                         "timeouts": {"connect": 1, "read": 10, "total": 20}},
            "policies": {"concurrency": {"max_in_flight": 2}},
        }],
    }
    with GatewayProcess(config, files={"shop.yaml": OPENAPI}) as gw:
        keys = {}
        for name in ("alice", "bob"):
            made = subprocess.run([sys.executable, "-m", "bastion", "keys", "create", name, "-c", "bastion.yaml"],
                                  cwd=gw.folder, capture_output=True, text=True, timeout=60, check=True)
            keys[name] = made.stdout.strip().splitlines()[-1]

        def accepted() -> bool:
            with keepalive(gw) as conn:
                conn.send(build("GET", "/echo?warm-up", [("X-API-Key", keys["bob"])]))
                return conn.read_response().status == 200

        _wait(accepted, "the keys accepted")  # the key snapshot polls the store every second
        yield gw, keys


def test_a_consumer_over_its_requests_in_flight_gets_429(
    shop: tuple[GatewayProcess, dict[str, str]], upstream: ScriptedUpstream, token: str
) -> None:
    """Alice's two slow requests in flight fill her share: her third is refused with 429
    problem+json and ``Retry-After`` (reason ``concurrency.exceeded``, counted in
    ``bastion_limit_rejections_total``) and never forwarded, while bob's request passes at
    the same moment; once hers are answered, she passes again."""
    gw, keys = shop
    alice = [("X-API-Key", keys["alice"])]
    with keepalive(gw, timeout=10) as one, keepalive(gw, timeout=10) as two:
        one.send(build("GET", f"/slow?ms=1500&{token}-1", alice))
        two.send(build("GET", f"/slow?ms=1500&{token}-2", alice))
        _wait(lambda: upstream.saw(f"{token}-1") and upstream.saw(f"{token}-2"), "both slow requests upstream")
        with keepalive(gw) as conn:
            conn.send(build("GET", f"/echo?{token}-3", alice))
            refused = conn.read_response()
            conn.send(build("GET", f"/echo?{token}-bob", [("X-API-Key", keys["bob"])]))
            assert conn.read_response().status == 200
        doc = assert_problem(refused, 429)
        assert refused.header("retry-after") == "1"
        record = gw.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])
        assert record["blocked_by"] == "concurrency"
        assert record["decisions"] == [{"stage": "concurrency", "action": "block", "reason": "concurrency.exceeded"}]
        assert not upstream.saw(f"{token}-3")
        assert one.read_response().status == 200 and two.read_response().status == 200
    with keepalive(gw) as conn:
        conn.send(build("GET", f"/echo?{token}-4", alice))
        assert conn.read_response().status == 200
    series = 'bastion_limit_rejections_total{reason="concurrency.exceeded"} '
    _wait(lambda: series in str(gw.admin("GET", "/metrics")[1]), "the refusal counted as a limit's")


def test_a_request_cut_by_its_client_frees_its_place(
    shop: tuple[GatewayProcess, dict[str, str]], upstream: ScriptedUpstream, token: str
) -> None:
    """Clients that disconnect while their requests are in flight leave no place taken:
    after two such requests of alice are cut (recorded as 499 while the upstream still
    works on them), two more of hers are in flight together."""
    gw, keys = shop
    alice = [("X-API-Key", keys["alice"])]
    for i in range(2):
        with keepalive(gw) as conn:
            conn.send(build("GET", f"/slow?ms=3000&{token}-cut{i}", alice))
            _wait(lambda i=i: upstream.saw(f"{token}-cut{i}"), "the request upstream")
            # Closed with a reset, as a client that crashed or gave up does (not a half-close).
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _wait(lambda: len([r for r in gw.access_log_records() if (r.get("route"), r.get("status")) == ("slow", 499)]) >= 2,
          "the cut requests recorded")
    with keepalive(gw, timeout=10) as one, keepalive(gw, timeout=10) as two:
        one.send(build("GET", f"/slow?ms=300&{token}-a", alice))
        two.send(build("GET", f"/slow?ms=300&{token}-b", alice))
        assert one.read_response().status == 200 and two.read_response().status == 200
