"""The largest upstream response body a route forwards (``max_upstream_response_bytes``),
through the real proxy and a real upstream on loopback.

An upstream that announces a body over the limit (Content-Length) is refused before any
answer goes out: the client gets 502 problem+json on a connection that stays usable. One
whose body crosses the limit while it streams (chunked) has the client's connection cut
before the body's end, so the client sees a truncated answer, never a complete one; no byte
over the limit is forwarded. A body buffered for a stage is held to it too. Each is recorded
with the limit's reason (``http.response_too_large``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.testing import RawConnection

from .conftest import SHARED_UPSTREAM, gateway_config
from .inprocess import InProcessGateway
from .scripted import ScriptedUpstream, pattern
from .test_response_body import WholeBody

LIMIT = 256 * 1024


def _config(upstream: ScriptedUpstream, **limits: Any) -> dict[str, Any]:
    routes = [
        {"path": "/", "prefix": True, "public": True},
        {"path": "/", "prefix": True, "public": True, "host": "roomy.test",
         "limits": {"max_upstream_response_bytes": 4 * LIMIT}},
        {"path": "/head-test", "public": True, "limits": {"max_upstream_response_bytes": 5}},
    ]
    return gateway_config(
        upstream.url,
        routes=routes,
        upstream_options=SHARED_UPSTREAM,
        listen={"limits": {"max_upstream_response_bytes": LIMIT, **limits}},
    )


@pytest.fixture
def gateway(upstream: ScriptedUpstream, tmp_path: Path) -> Iterator[InProcessGateway]:
    """Every route as configured (no stage of the test's own)."""
    with InProcessGateway(_config(upstream), tmp_path, None) as gw:
        yield gw


def _record(gw: InProcessGateway, request_id: str | None) -> dict[str, Any]:
    (line,) = [r for r in gw.access_records() if r["request_id"] == request_id]
    return line


def _chunked_body(data: bytes) -> bytes:
    """The body bytes of a chunked response's whole chunks (what a client could use)."""
    head_end = data.index(b"\r\n\r\n") + 4
    body, pos = b"", head_end
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            return body
        size = int(data[pos:line_end], 16)
        if size == 0 or line_end + 2 + size > len(data):
            return body + data[line_end + 2 : line_end + 2 + size]
        body += data[line_end + 2 : line_end + 2 + size]
        pos = line_end + 2 + size + 2


@pytest.mark.parametrize("path", ["/big", "/bigchunked"])
def test_a_body_at_the_limit_is_forwarded_whole(gateway: InProcessGateway, path: str) -> None:
    """A body of exactly the limit, with Content-Length or chunked, reaches the client intact."""
    with RawConnection("127.0.0.1", gateway.port) as conn:
        conn.send(f"GET {path}?n={LIMIT} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
        resp = conn.read_response()
    assert resp.status == 200
    assert resp.body == pattern(LIMIT)


def test_a_body_announced_over_the_limit_is_a_502_before_any_answer(gateway: InProcessGateway) -> None:
    """Content-Length one byte over the limit: 502 problem+json saying why, nothing of the
    upstream's body or head forwarded, the client's connection still serving; the record
    names the limit (blocked by the core) and the upstream failure's kind."""
    with RawConnection("127.0.0.1", gateway.port) as conn:
        conn.send(f"GET /big?n={LIMIT + 1} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
        resp = conn.read_response()
        assert resp.status == 502
        assert resp.header("content-type") == "application/problem+json"
        assert b"larger than this route allows" in resp.body
        conn.send(b"GET /echo HTTP/1.1\r\nHost: api.test\r\n\r\n")
        assert conn.read_response().status == 200
    record = _record(gateway, resp.header("x-request-id"))
    assert record["status"] == 502
    assert record["blocked_by"] == "core"
    assert record["reason"] == "http.response_too_large"
    assert record["upstream_error"] == "response_too_large"


def test_a_streamed_body_over_the_limit_is_cut_before_its_end(gateway: InProcessGateway) -> None:
    """A chunked body of four times the limit: the 200 head and at most the limit's bytes go
    out, then the connection closes without the terminating chunk, so the client cannot take
    the truncated body for a whole one; the record keeps the 200, the bytes sent and the
    limit's reason."""
    with RawConnection("127.0.0.1", gateway.port) as conn:
        conn.send(f"GET /bigchunked?n={4 * LIMIT} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
        with pytest.raises(ConnectionError, match="closed before a whole response"):
            conn.read_response()
        received = conn.received
    assert received.startswith(b"HTTP/1.1 200 ")
    assert b"\r\n0\r\n\r\n" not in received
    body = _chunked_body(received)
    assert len(body) <= LIMIT and body == pattern(len(body))
    (record,) = [r for r in gateway.access_records() if r["path"].startswith("/bigchunked")]
    assert record["status"] == 200
    assert record["reason"] == "http.response_too_large"
    assert record["blocked_by"] == "core"
    assert record["upstream_error"] == "response_too_large"
    assert 0 < record["bytes_out"] <= LIMIT


def test_a_route_sets_its_own_limit(gateway: InProcessGateway) -> None:
    """The routes of host roomy.test allow four times the listener's limit: a body of twice
    it passes whole there, while the same body on another route is refused."""
    with RawConnection("127.0.0.1", gateway.port) as conn:
        conn.send(f"GET /big?n={2 * LIMIT} HTTP/1.1\r\nHost: roomy.test\r\n\r\n".encode())
        roomy = conn.read_response()
        conn.send(f"GET /big?n={2 * LIMIT} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
        other = conn.read_response()
    assert roomy.status == 200 and roomy.body == pattern(2 * LIMIT)
    assert other.status == 502


def test_a_head_response_is_not_held_to_the_length_it_announces(gateway: InProcessGateway) -> None:
    """On a route allowing 5 bytes, HEAD of an 11-byte resource answers 200 with its
    Content-Length (a HEAD response has no body), while GET of it is refused."""
    with RawConnection("127.0.0.1", gateway.port) as conn:
        conn.send(b"HEAD /head-test HTTP/1.1\r\nHost: api.test\r\n\r\n")
        head = conn.read_response("HEAD")
        conn.send(b"GET /head-test HTTP/1.1\r\nHost: api.test\r\n\r\n")
        get = conn.read_response()
    assert head.status == 200 and head.header("content-length") == "11"
    assert get.status == 502


def test_a_body_buffered_for_a_stage_is_held_to_the_limit(upstream: ScriptedUpstream, tmp_path: Path) -> None:
    """With a stage that needs whole bodies and may buffer more than the route forwards, a
    chunked body over the forwarding limit is refused with 502 (an upstream failure's answer,
    not the handler's crash path) and the stage is shown none of it; the connection serves
    the next request."""
    whole = WholeBody()
    config = _config(upstream, max_response_body_bytes=4 * LIMIT)
    with InProcessGateway(config, tmp_path, [whole]) as gw, RawConnection("127.0.0.1", gw.port) as conn:
        conn.send(f"GET /bigchunked?n={2 * LIMIT} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
        resp = conn.read_response()
        assert resp.status == 502
        assert b"larger than this route allows" in resp.body
        conn.send(b"GET /echo HTTP/1.1\r\nHost: api.test\r\n\r\n")
        echo = conn.read_response()
        assert echo.status == 200
        record = _record(gw, resp.header("x-request-id"))
    assert record["reason"] == "http.response_too_large"
    assert whole.seen == [len(echo.body)]  # the 502 is an upstream failure's: no response hook runs on it

