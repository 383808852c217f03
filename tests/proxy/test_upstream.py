"""The upstream side: pooling, failures as problem+json, timeouts, retries, balancing,
circuit breaking and active health checks, against real servers on loopback."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bastion.testing import GatewayProcess, RawResponse, free_port

from .scripted import ScriptedUpstream
from .util import assert_problem, build, keepalive, one

# -- the shared gateway (circuit breaker off, read timeout 1.5 s, one retry) -----------------


def test_upstream_connections_are_reused(gateway: GatewayProcess, upstream: ScriptedUpstream,
                                         token: str) -> None:
    """Twenty sequential requests, from ten client connections, use at most two upstream
    connections: the pool keeps them alive and hands them out again."""
    for i in range(10):
        with keepalive(gateway) as conn:
            for j in range(2):
                conn.send(build("GET", f"/count?{token}-{i}-{j}"))
                assert conn.read_response().status == 200
    records = upstream.records(token)
    assert len(records) == 20
    assert len({r.conn_id for r in records}) <= 2
    assert max(r.seq for r in records) >= 9


def test_upstream_connection_closed_by_upstream_is_not_reused(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """After a response that ends with the upstream closing its connection, the next
    request goes over a new upstream connection and succeeds."""
    assert one(gateway, "GET", f"/close?{token}-a").status == 200
    resp = one(gateway, "GET", f"/echo?{token}-b")
    assert resp.status == 200
    first, second = upstream.records(token)
    assert first.conn_id != second.conn_id


def test_upstream_down_gets_502() -> None:
    """An upstream that refuses connections: 502 problem+json with a generic detail (no
    address, no errno), and the access log names the failure kind."""
    port = free_port()
    config = {
        "access_log": {"path": "access.log"},
        "services": [{"name": "gone", "upstream": {"targets": [f"http://127.0.0.1:{port}"],
                                                   "retries": 0},
                      "routes": [{"path": "/", "prefix": True, "public": True}]}],
    }
    with GatewayProcess(config) as gw:
        resp = one(gw, "GET", "/anything")
        doc = assert_problem(resp, 502)
        assert str(port) not in resp.body.decode()
        assert doc["detail"] == "The upstream service failed to answer."
        record = gw.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])
    assert (record["status"], record["upstream_error"]) == (502, "connect")


def test_upstream_read_timeout_gets_504(gateway: GatewayProcess, upstream: ScriptedUpstream,
                                        token: str) -> None:
    """An upstream silent for longer than the read timeout (1.5 s): 504 problem+json after
    about that long, and the request is not retried (it may have been processed)."""
    started = time.monotonic()
    resp = one(gateway, "GET", f"/slow?ms=2500&{token}")
    elapsed = time.monotonic() - started
    assert_problem(resp, 504)
    assert 1.3 < elapsed < 2.4
    assert len(upstream.records(token)) == 1


def test_upstream_503_is_passed_through(gateway: GatewayProcess, token: str) -> None:
    """An upstream's own 503 reaches the client as the upstream sent it (status, content
    type, body), not replaced by a gateway problem document."""
    resp = one(gateway, "GET", f"/status/503?{token}")
    assert resp.status == 503
    assert resp.header("content-type") == "application/json"
    assert resp.json() == {"status": 503}


def test_upstream_dropping_connection_gets_502(gateway: GatewayProcess, upstream: ScriptedUpstream,
                                              token: str) -> None:
    """An upstream that closes without answering: GET is tried twice (one retry, on a new
    connection), then the client gets 502 problem+json."""
    assert_problem(one(gateway, "GET", f"/drop?{token}"), 502)
    attempts = upstream.records(token)
    assert len(attempts) == 2
    assert attempts[0].conn_id != attempts[1].conn_id


def test_get_is_retried_when_a_reused_connection_is_dropped(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """A pooled connection the upstream drops instead of answering (the keep-alive race):
    an idempotent GET is retried on a fresh connection and succeeds."""
    with keepalive(gateway) as conn:
        conn.send(build("GET", f"/echo?{token}-warm"))
        assert conn.read_response().status == 200
        conn.send(build("GET", f"/flaky?{token}-get"))
        resp = conn.read_response()
    assert resp.status == 200
    tries = upstream.records(f"{token}-get")
    assert len(tries) == 2
    assert tries[0].seq > 0 and tries[1].seq == 0


def test_retry_after_a_dropped_pooled_connection_takes_a_fresh_one(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """With two idle pooled connections, both past their first request, a GET the upstream
    drops on one is retried on a new connection, not on the other pooled one (which would
    drop it too: the failed retry was a 502)."""
    import threading

    def slow(i: int) -> None:
        assert one(gateway, "GET", f"/slow?ms=300&{token}-warm{i}").status == 200

    threads = [threading.Thread(target=slow, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    warm = upstream.records(f"{token}-warm")
    assert len({r.conn_id for r in warm}) == 2  # two upstream connections, now idle in the pool
    resp = one(gateway, "GET", f"/flaky?{token}-get")
    assert resp.status == 200
    tries = upstream.records(f"{token}-get")
    assert [t.seq > 0 for t in tries] == [True, False]


def test_post_is_not_retried(gateway: GatewayProcess, upstream: ScriptedUpstream, token: str) -> None:
    """The same dropped pooled connection with a POST: not retried (it is not idempotent),
    the client gets 502 problem+json and the upstream saw it exactly once."""
    with keepalive(gateway) as conn:
        conn.send(build("GET", f"/echo?{token}-warm"))
        assert conn.read_response().status == 200
        conn.send(build("POST", f"/flaky?{token}-post", body=b"pay once"))
        resp = conn.read_response()
    assert_problem(resp, 502)
    assert len(upstream.records(f"{token}-post")) == 1


def test_upstream_closing_during_streamed_upload_gets_502(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """An upstream that closes its connection while the request body is still streaming
    to it: the client gets a 502 problem+json, not a silently closed connection."""
    with keepalive(gateway) as conn:
        conn.send(build("PUT", f"/drop-early?{token}", [("Content-Length", "300000"),
                                                        ("Connection", "close")]))
        for _ in range(6):
            time.sleep(0.05)
            try:
                conn.send(b"x" * 50000)
            except OSError:
                break
        resp = conn.read_response()
    assert_problem(resp, 502)


@pytest.mark.parametrize("path", ["/garbage", "/bad-framing"])
def test_invalid_upstream_response_gets_502(gateway: GatewayProcess, token: str, path: str) -> None:
    """An upstream response that is not valid HTTP/1.1 (a non-numeric Content-Length, or
    Content-Length with Transfer-Encoding) is never relayed: 502 problem+json."""
    assert_problem(one(gateway, "GET", f"{path}?{token}"), 502)


# -- a gateway with several services, one per Host ------------------------------------------


class Upstreams:
    """The extra scripted upstreams of :func:`multi`."""

    def __init__(self) -> None:
        self.a = ScriptedUpstream().start()
        self.b = ScriptedUpstream().start()
        self.health = ScriptedUpstream().start()
        self.evict = ScriptedUpstream().start()

    def stop(self) -> None:
        for server in (self.a, self.b, self.health, self.evict):
            server.stop()


@pytest.fixture(scope="module")
def extra() -> Iterator[Upstreams]:
    servers = Upstreams()
    yield servers
    servers.stop()


def _service(name: str, targets: list[str], **upstream: Any) -> dict[str, Any]:
    return {"name": name, "host": f"{name}.test", "upstream": {"targets": targets, **upstream},
            "routes": [{"path": "/", "prefix": True, "public": True}]}


@pytest.fixture(scope="module")
def multi(extra: Upstreams) -> Iterator[GatewayProcess]:
    """Services by Host: ``rr`` (two targets, round robin), ``down`` (two dead targets,
    breaker after 2 failures), ``hc`` (health-checked every 0.1 s), ``evict`` (pooled
    connections evicted after 0.5 s idle)."""
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    config = {
        "access_log": {"path": "access.log"},
        "services": [
            _service("rr", [extra.a.url, extra.b.url]),
            _service("down", dead, retries=0,
                     circuit_breaker={"failures": 2, "cooldown": 60}),
            _service("hc", [extra.health.url],
                     health_check={"path": "/health", "interval": 0.1, "timeout": 0.5,
                                   "healthy_threshold": 1, "unhealthy_threshold": 1}),
            _service("evict", [extra.evict.url], idle_timeout=0.5),
        ],
    }
    with GatewayProcess(config) as gw:
        yield gw


def _get(gw: GatewayProcess, host: str, target: str) -> RawResponse:
    with keepalive(gw) as conn:
        conn.send(build("GET", target, [("Connection", "close")], host=host))
        return conn.read_response()


def _eventually(check: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_round_robin_over_two_targets(multi: GatewayProcess, extra: Upstreams, token: str) -> None:
    """Round robin: six requests alternate between the two targets, three each."""
    for i in range(6):
        assert _get(multi, "rr.test", f"/echo?{token}-{i}").status == 200
    a = [r.target for r in extra.a.records(token)]
    b = [r.target for r in extra.b.records(token)]
    assert len(a) == len(b) == 3
    assert {a[0][-1], b[0][-1]} == {"0", "1"}
    parity = int(a[0][-1]) % 2
    assert all(int(t[-1]) % 2 == parity for t in a)


def test_circuit_breaker_opens_when_all_targets_fail(multi: GatewayProcess) -> None:
    """Two dead targets, a breaker that opens after 2 failures each: four 502s, then 503
    problem+json without trying (all targets open), recorded as ``unavailable``."""
    statuses = [_get(multi, "down.test", f"/x{i}").status for i in range(4)]
    assert statuses == [502, 502, 502, 502]
    resp = _get(multi, "down.test", "/x5")
    doc = assert_problem(resp, 503)
    assert doc["detail"] == "The upstream service is unavailable."
    record = multi.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])
    assert record["upstream_error"] == "unavailable"
    assert record["latency_ms"] < 50
    # /metrics says so: each dead target is out of rotation in the one worker, by its breaker.
    down: list[str] = multi.config["services"][1]["upstream"]["targets"]
    wanted = [f'bastion_upstream_unavailable{{service="down",target="{t}",why="circuit_open"}} 1.0' for t in down]
    assert _eventually(lambda: all(w in _metrics(multi) for w in wanted)), _metrics(multi)
    assert f'bastion_upstream_transitions_total{{service="down",target="{down[0]}",to="circuit_open"}} 1.0' \
        in _metrics(multi)


def _metrics(gw: GatewayProcess) -> str:
    status, text = gw.admin("GET", "/metrics")
    assert status == 200
    return str(text)


def test_health_check_marks_target_down_and_up(multi: GatewayProcess, extra: Upstreams,
                                               token: str) -> None:
    """Active health checks: while the target's ``/health`` answers 503 the target is taken
    out (requests get 503 problem+json and do not reach it); when it answers 200 again the
    target is back."""
    assert _get(multi, "hc.test", f"/echo?{token}-before").status == 200
    assert any(r.path == "/health" for r in extra.health.records())
    extra.health.healthy = False
    try:
        assert _eventually(lambda: _get(multi, "hc.test", f"/echo?{token}-probe").status == 503)
        resp = _get(multi, "hc.test", f"/echo?{token}-down")
        assert_problem(resp, 503)
        assert extra.health.records(f"{token}-down") == []
        unhealthy = f'bastion_upstream_unavailable{{service="hc",target="{extra.health.url}",why="unhealthy"}}'
        assert _eventually(lambda: f"{unhealthy} 1.0" in _metrics(multi)), _metrics(multi)
    finally:
        extra.health.healthy = True
    assert _eventually(lambda: _get(multi, "hc.test", f"/echo?{token}-after").status == 200)
    # Back in rotation: the gauge is 0 again, and the counter saw it leave and return.
    assert _eventually(lambda: f"{unhealthy} 0.0" in _metrics(multi)), _metrics(multi)
    back = f'bastion_upstream_transitions_total{{service="hc",target="{extra.health.url}",to="healthy"}}'
    assert back in _metrics(multi)
    health = [r for r in extra.health.records() if r.path == "/health"]
    assert health[-1].header("user-agent") == "bastion-health"


def test_idle_upstream_connections_are_evicted(multi: GatewayProcess, extra: Upstreams,
                                               token: str) -> None:
    """A pooled connection unused for longer than ``idle_timeout`` (0.5 s) is closed by the
    gateway; the next request opens a new one. Requests close together share one."""
    assert _get(multi, "evict.test", f"/echo?{token}-1").status == 200
    assert _get(multi, "evict.test", f"/echo?{token}-2").status == 200
    time.sleep(1.3)
    assert _get(multi, "evict.test", f"/echo?{token}-3").status == 200
    first, second, third = extra.evict.records(token)
    assert first.conn_id == second.conn_id
    assert third.conn_id != first.conn_id
