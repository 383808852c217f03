"""Resource limits (OWASP API4) through a real gateway: each bound answers its problem+json
status, names its reason in the access record, and is counted by reason in
``bastion_limit_rejections_total``."""

from __future__ import annotations

import base64
import gzip
import random
import select
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bastion.testing import GatewayProcess, parse_responses

from .conftest import SHARED_UPSTREAM, gateway_config
from .scripted import ScriptedUpstream
from .util import assert_problem, build, keepalive

#: The listener's limits in these tests: the smallest the schema allows, short timeouts.
LISTEN = {
    "limits": {"max_headers": 8, "max_header_bytes": 1024, "max_url_bytes": 256, "max_body_bytes": 1000},
    "timeouts": {"header": 0.5, "body": 0.5, "body_total": 1.5},
}


@pytest.fixture(scope="module")
def limited(upstream: ScriptedUpstream) -> Iterator[GatewayProcess]:
    """A gateway in front of the scripted upstream with :data:`LISTEN`'s limits."""
    config = gateway_config(upstream.url, upstream_options=SHARED_UPSTREAM, listen=LISTEN)
    with GatewayProcess(config) as gw:
        yield gw


def _wait(predicate: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"never saw {what}")


def _refused(gw: GatewayProcess, data: bytes, status: int) -> dict[str, Any]:
    """Send ``data``; its one answer is a ``status`` problem: the request's access record."""
    with keepalive(gw) as conn:
        conn.send(data)
        resp = conn.read_response()
    doc = assert_problem(resp, status)
    if status in (429, 503):
        assert resp.header("retry-after") == "1"
    return gw.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])


HEAD_CASES = [
    ("target", lambda t: build("GET", f"/echo?{t}&{'a' * 300}"), 414, "http.url_too_long"),
    ("head bytes", lambda t: build("GET", f"/echo?{t}", [("X-Big", "b" * 1100)]), 431, "http.header_too_large"),
    ("header count", lambda t: build("GET", f"/echo?{t}", [(f"X-{i}", "1") for i in range(9)]), 431,
     "http.too_many_headers"),
    ("declared body", lambda t: build("POST", f"/echo?{t}", [("Connection", "close")], b"x" * 1001), 413,
     "http.body_too_large"),
    ("chunked body", lambda t: build("POST", f"/echo?{t}", [("Connection", "close"), ("Transfer-Encoding", "chunked")],
                                     b"%x\r\n%s\r\n0\r\n\r\n" % (1001, b"x" * 1001)), 413, "http.body_too_large"),
]


@pytest.mark.parametrize(("case", "request_bytes", "status", "reason"), HEAD_CASES, ids=[c[0] for c in HEAD_CASES])
def test_each_limit_answers_its_status_and_reason(
    limited: GatewayProcess, upstream: ScriptedUpstream, token: str, case: str,
    request_bytes: Callable[[str], bytes], status: int, reason: str,
) -> None:
    """A request over one limit gets that limit's status as problem+json, its record says
    ``blocked_by: core`` with the limit's own reason, and nothing reaches the upstream."""
    record = _refused(limited, request_bytes(token), status)
    assert (record["status"], record["blocked_by"], record["reason"]) == (status, "core", reason)
    assert not upstream.saw(token)


def test_limit_rejections_are_counted_by_reason(limited: GatewayProcess, token: str) -> None:
    """Two refusals for header count and one for the target's length are counted under
    their own reasons in ``bastion_limit_rejections_total``; a refusal that is no resource
    limit (an encoded slash) is not counted there."""
    def series(reason: str) -> float:
        text = str(limited.admin("GET", "/metrics")[1])
        prefix = f'bastion_limit_rejections_total{{reason="{reason}"}} '
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line[len(prefix):])
        return 0.0

    time.sleep(1.2)  # the metrics snapshot of earlier tests is written once a second
    before = {r: series(r) for r in ("http.too_many_headers", "http.url_too_long")}
    for _ in range(2):
        _refused(limited, build("GET", f"/echo?{token}", [(f"X-{i}", "1") for i in range(9)]), 431)
    _refused(limited, build("GET", f"/echo?{token}&{'a' * 300}"), 414)
    _refused(limited, build("GET", f"/a%2fb?{token}", [("Connection", "close")]), 400)
    _wait(lambda: series("http.too_many_headers") == before["http.too_many_headers"] + 2
          and series("http.url_too_long") == before["http.url_too_long"] + 1, "the refusals counted")
    assert 'bastion_limit_rejections_total{reason="http.target"}' not in str(limited.admin("GET", "/metrics")[1])


def test_slowloris_head_is_cut_with_408(limited: GatewayProcess, upstream: ScriptedUpstream, token: str) -> None:
    """A head trickled a byte at a time (each byte well within any per-read timeout) is cut
    once the head timeout from its first byte is over: 408 problem+json, the connection
    closed, recorded as ``http.header_timeout``, nothing forwarded. The trickle would go on
    for 20 s; the gateway ends it first."""
    with keepalive(limited, timeout=10) as conn:
        conn.send(f"GET /echo?{token} HTTP/1.1\r\nHost: a\r\nX-Slow: ".encode())
        for _ in range(200):
            readable, _, _ = select.select([conn.sock], [], [], 0.1)
            if readable:
                break
            conn.send(b"a")
        responses = parse_responses(conn.read_until_close())
    assert len(responses) == 1
    doc = assert_problem(responses[0], 408, closes=True)
    record = limited.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])
    assert (record["blocked_by"], record["reason"]) == ("core", "http.header_timeout")
    assert not upstream.saw(token)


def test_stalled_body_is_cut_with_408(limited: GatewayProcess, upstream: ScriptedUpstream, token: str) -> None:
    """A body that stops half-way gets 408 after the body timeout, recorded as
    ``http.body_timeout``; the upstream never gets a complete request."""
    with keepalive(limited, timeout=10) as conn:
        conn.send(build("POST", f"/echo?{token}", [("Content-Length", "10")], b"01234"))
        responses = parse_responses(conn.read_until_close())
    assert len(responses) == 1
    doc = assert_problem(responses[0], 408, closes=True)
    record = limited.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])
    assert (record["blocked_by"], record["reason"]) == ("core", "http.body_timeout")
    assert upstream.records(token) == []


def test_trickled_body_is_cut_with_408(limited: GatewayProcess, upstream: ScriptedUpstream, token: str) -> None:
    """Slowloris on the body: a byte every 0.1 s never lets the per-piece body timeout
    (0.5 s) expire, but the whole body must arrive within ``body_total`` (1.5 s) of the
    head: the 100-byte body, which would take 10 s, is cut with 408 problem+json, the
    connection closed, recorded as ``http.body_total_timeout``; the upstream never gets a
    complete request."""
    with keepalive(limited, timeout=15) as conn:
        conn.send(build("POST", f"/echo?{token}", [("Content-Length", "100")]))
        sent = 0
        while sent < 100:
            readable, _, _ = select.select([conn.sock], [], [], 0.1)
            if readable:
                break
            conn.send(b"x")
            sent += 1
        responses = parse_responses(conn.read_until_close())
    assert sent < 100, "the gateway let the whole trickled body in"
    assert len(responses) == 1
    doc = assert_problem(responses[0], 408, closes=True)
    record = limited.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])
    assert (record["blocked_by"], record["reason"]) == ("core", "http.body_total_timeout")
    assert upstream.records(token) == []


@pytest.fixture(scope="module")
def per_route(upstream: ScriptedUpstream) -> Iterator[GatewayProcess]:
    """The default listener limits; the service allows 10 query parameters, and ``/tight``
    takes at most 4 header fields, 64-byte targets and 3 query parameters. ``/inspected``
    and ``/few-keys`` (at most 5 JSON keys) run detection, which parses JSON bodies."""
    config = gateway_config(upstream.url, upstream_options=SHARED_UPSTREAM, routes=[
        {"path": "/", "prefix": True, "public": True},
        {"path": "/tight", "prefix": True, "public": True,
         "limits": {"max_headers": 4, "max_url_bytes": 64, "max_query_params": 3}},
        {"path": "/inspected", "prefix": True, "public": True, "policies": {"detection": {}}},
        {"path": "/few-keys", "prefix": True, "public": True, "policies": {"detection": {}},
         "limits": {"max_json_keys": 5}},
    ])
    config["services"][0]["limits"] = {"max_query_params": 10}
    with GatewayProcess(config) as gw:
        yield gw


ROUTE_CASES = [
    ("header count", lambda t, p: build("GET", f"{p}?{t}", [(f"X-{i}", "1") for i in range(4)]), 431,
     "http.too_many_headers"),
    ("target", lambda t, p: build("GET", f"{p}?{t}&pad={'a' * 64}"), 414, "http.url_too_long"),
    ("query parameters", lambda t, p: build("GET", f"{p}?{t}&a=1&b=2&c=3"), 414, "http.too_many_query_params"),
]


@pytest.mark.parametrize(("case", "request_bytes", "status", "reason"), ROUTE_CASES, ids=[c[0] for c in ROUTE_CASES])
def test_a_route_tightens_the_listener_limits(
    per_route: GatewayProcess, upstream: ScriptedUpstream, token: str, case: str,
    request_bytes: Callable[[str, str], bytes], status: int, reason: str,
) -> None:
    """The same request is forwarded on the catch-all route and refused on ``/tight``, whose
    own limit it is over: the limit's status as problem+json, its reason in the record."""
    with keepalive(per_route) as conn:
        conn.send(request_bytes(f"{token}-ok", "/echo"))
        assert conn.read_response().status == 200
    record = _refused(per_route, request_bytes(token, "/tight"), status)
    assert (record["route"], record["blocked_by"], record["reason"]) == ("api:/tight", "core", reason)
    assert [r.target.split("?")[1].split("&")[0] for r in upstream.records(token)] == [f"{token}-ok"]


def test_the_service_limit_applies_to_its_routes(per_route: GatewayProcess, token: str) -> None:
    """The service's ``max_query_params: 10`` holds on a route that sets none of its own:
    10 parameters pass, 11 are refused with 414."""
    params = "&".join(f"p{i}=1" for i in range(9))
    with keepalive(per_route) as conn:
        conn.send(build("GET", f"/echo?{token}&{params}"))
        assert conn.read_response().status == 200
    record = _refused(per_route, build("GET", f"/echo?{token}&{params}&p9=1"), 414)
    assert record["reason"] == "http.too_many_query_params"


def test_route_limits_refuse_before_the_body(per_route: GatewayProcess, upstream: ScriptedUpstream,
                                             token: str) -> None:
    """A head over the route's limit that announces a body is refused at once from the head
    (431, not a body timeout): the client is never asked for its body, nothing is forwarded."""
    head = build("POST", f"/tight?{token}", [("Content-Length", "500"), ("X-1", "1"), ("X-2", "1"), ("X-3", "1")])
    with keepalive(per_route, timeout=10) as conn:
        conn.send(head)
        resp = conn.read_response()
    doc = assert_problem(resp, 431)
    record = per_route.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])
    assert (record["reason"], record["bytes_in"]) == ("http.too_many_headers", 0)
    assert not upstream.saw(token)


JSON_CASES = [
    ("array elements", "/inspected", b"[" + b"1," * 100_000 + b"1]", "json.too_many_items"),
    ("depth", "/inspected", b"[" * 65 + b"]" * 65, "json.too_deep"),
    ("number", "/inspected", b'{"n": 1' + b"0" * 100 + b"}", "json.number_too_long"),
    ("route's keys", "/few-keys", b'{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6}', "json.too_many_keys"),
]


@pytest.mark.parametrize(("case", "path", "body", "reason"), JSON_CASES, ids=[c[0] for c in JSON_CASES])
def test_json_limits_hold_where_a_stage_parses_the_body(
    per_route: GatewayProcess, upstream: ScriptedUpstream, token: str, case: str, path: str, body: bytes,
    reason: str,
) -> None:
    """A JSON body over a JSON limit (the listener's defaults, or the route's own) on a
    route whose stage parses it is refused with 413 problem+json and the limit's reason,
    before the stage builds it; nothing reaches the upstream."""
    headers = [("Content-Type", "application/json")]
    record = _refused(per_route, build("POST", f"{path}?{token}", headers, body), 413)
    assert (record["blocked_by"], record["reason"]) == ("core", reason)
    assert not upstream.saw(token)


def test_json_within_limits_is_forwarded(per_route: GatewayProcess, upstream: ScriptedUpstream, token: str) -> None:
    """The controls: a body within the limits (30 levels, within detection's own 32; 5 keys
    on ``/few-keys``, its limit) is forwarded whole; a route no stage parses bodies on streams
    even a 100 001-element array through (nothing of the gateway builds it)."""
    headers = [("Content-Type", "application/json")]
    big = b"[" + b"1," * 100_000 + b"1]"
    for path, body in (("/inspected", b"[" * 30 + b"]" * 30), ("/few-keys", b'{"a":1,"b":2,"c":3,"d":4,"e":5}'),
                       ("/echo", big)):
        with keepalive(per_route) as conn:
            conn.send(build("POST", f"{path}?{token}", headers, body))
            assert conn.read_response().status == 200, path
    assert [r.body for r in upstream.records(token)] == [b"[" * 30 + b"]" * 30, b'{"a":1,"b":2,"c":3,"d":4,"e":5}', big]


def test_a_compressed_json_body_is_not_measured_as_sent(per_route: GatewayProcess, upstream: ScriptedUpstream,
                                                        token: str) -> None:
    """A gzip JSON body's bytes are no JSON: hundreds of bracket bytes in random order, which
    measured as sent would look nested far too deep. It is left to the stage that inflates it
    (detection, with its own bound) and forwarded as it came."""
    document = b'{"blob": "' + base64.b64encode(random.Random(7).randbytes(30_000)) + b'"}'
    body = gzip.compress(document)
    assert body.count(b"[") + body.count(b"{") > 64
    headers = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
    with keepalive(per_route) as conn:
        conn.send(build("POST", f"/inspected?{token}", headers, body))
        assert conn.read_response().status == 200
    assert [r.body for r in upstream.records(token)] == [body]


def test_a_worker_at_capacity_answers_503(upstream: ScriptedUpstream, token: str) -> None:
    """With ``max_in_flight: 2``, two slow requests in flight fill the worker: a third gets
    503 problem+json with ``Retry-After`` at once (recorded as ``http.too_many_in_flight``)
    and never reaches the upstream; once the two are answered, requests pass again."""
    patient = {**SHARED_UPSTREAM, "timeouts": {"connect": 1, "read": 10, "total": 20}}
    config = gateway_config(upstream.url, upstream_options=patient, listen={"limits": {"max_in_flight": 2}})
    with GatewayProcess(config) as gw, keepalive(gw, timeout=10) as one, keepalive(gw, timeout=10) as two:
        one.send(build("GET", f"/slow?ms=1500&{token}-1"))
        two.send(build("GET", f"/slow?ms=1500&{token}-2"))
        _wait(lambda: upstream.saw(f"{token}-1") and upstream.saw(f"{token}-2"), "both slow requests upstream")
        record = _refused(gw, build("GET", f"/echo?{token}-3"), 503)
        assert (record["blocked_by"], record["reason"]) == ("core", "http.too_many_in_flight")
        assert not upstream.saw(f"{token}-3")
        assert one.read_response().status == 200 and two.read_response().status == 200
        with keepalive(gw) as conn:
            conn.send(build("GET", f"/echo?{token}-4"))
            assert conn.read_response().status == 200
