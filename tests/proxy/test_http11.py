"""HTTP/1.1 behaviour of the data plane, client side and through to the upstream.

Keep-alive, pipelining, HEAD, ``Expect: 100-continue``, chunked bodies both ways,
close-delimited responses, half-closed clients, timeouts, large bodies with back-pressure,
upgrades, hop-by-hop and forwarding headers, request IDs and body limits, each over
real sockets with exact bytes.
"""

from __future__ import annotations

import hashlib
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.testing import GatewayProcess, RawResponse, parse_responses, raw_request

from .conftest import SHARED_UPSTREAM, gateway_config
from .scripted import ScriptedUpstream, pattern, sha256
from .util import assert_problem, build, keepalive, one, send_closing

MB = 1024 * 1024


@pytest.fixture(scope="module")
def timeouts_gateway(upstream: ScriptedUpstream) -> Iterator[GatewayProcess]:
    """A gateway with short client-side timeouts: idle 1 s, header 0.5 s, body 0.5 s."""
    config = gateway_config(upstream.url, upstream_options=SHARED_UPSTREAM,
                            listen={"timeouts": {"idle": 1, "header": 0.5, "body": 0.5}})
    with GatewayProcess(config) as gw:
        yield gw


@pytest.fixture(scope="module")
def trusting_gateway(upstream: ScriptedUpstream) -> Iterator[GatewayProcess]:
    """A gateway that believes forwarding headers from loopback (its "load balancer")."""
    config = gateway_config(upstream.url, upstream_options=SHARED_UPSTREAM,
                            listen={"trusted_proxies": ["127.0.0.0/8"]})
    with GatewayProcess(config) as gw:
        yield gw


def _chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def one_raw(gw: GatewayProcess, data: bytes) -> RawResponse:
    """Send ``data`` (one request) on a new connection and read its response."""
    with keepalive(gw) as conn:
        conn.send(data)
        return conn.read_response()


# -- connections ---------------------------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_connection(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """Three requests one after the other on one client connection are all answered,
    none of the answers closes the connection, and the upstream gets all three."""
    with keepalive(gateway) as conn:
        for i in range(3):
            conn.send(build("GET", f"/echo?{token}-{i}"))
            resp = conn.read_response()
            assert resp.status == 200
            assert resp.header("connection") is None
            assert resp.json()["target"] == f"/echo?{token}-{i}"
        assert not conn.is_closed_by_peer(wait=0.2)
    assert [r.target for r in upstream.records(token)] == [f"/echo?{token}-{i}" for i in range(3)]


def test_pipelined_requests_are_answered_in_order(gateway: GatewayProcess, token: str) -> None:
    """Three requests in one write, the first one slow: the responses come back in the
    order of the requests, each with its own body and framing."""
    data = (build("GET", f"/slow?ms=300&{token}-1")
            + build("GET", f"/echo?{token}-2")
            + build("GET", f"/chunked?{token}-3"))
    with keepalive(gateway) as conn:
        conn.send(data)
        first, second, third = (conn.read_response() for _ in range(3))
    assert first.json()["target"] == f"/slow?ms=300&{token}-1"
    assert second.json()["target"] == f"/echo?{token}-2"
    assert third.body == b"hello chunked world"
    assert [first.status, second.status, third.status] == [200, 200, 200]
    assert len({r.header("x-request-id") for r in (first, second, third)}) == 3


def test_pipelined_requests_with_bodies_and_head(gateway: GatewayProcess, token: str) -> None:
    """Pipelined POST (with a body), HEAD and GET in one write, then a close: each response
    is framed right (HEAD without a body) and the last one closes the connection."""
    data = (build("POST", f"/echo?{token}-1", body=b"first body")
            + build("HEAD", f"/head-test?{token}-2")
            + build("GET", f"/echo?{token}-3", [("Connection", "close")]))
    responses = send_closing(gateway, data, ["POST", "HEAD", "GET"])
    assert [r.status for r in responses] == [200, 200, 200]
    assert responses[0].json()["body"] == "first body"
    assert responses[1].body == b""
    assert responses[2].json()["target"] == f"/echo?{token}-3"
    assert responses[2].header("connection") == "close"


def test_connection_close_from_client(gateway: GatewayProcess, token: str) -> None:
    """``Connection: close`` from the client: the response says ``connection: close`` and
    the gateway closes the connection after it."""
    with keepalive(gateway) as conn:
        conn.send(build("GET", f"/echo?{token}", [("Connection", "close")]))
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.header("connection") == "close"
        assert conn.is_closed_by_peer(wait=2.0)


def test_http10_client(gateway: GatewayProcess, upstream: ScriptedUpstream, token: str) -> None:
    """An HTTP/1.0 request without Host is accepted; the gateway answers and closes (no
    keep-alive by default in 1.0) and talks HTTP/1.1 with a Host to the upstream."""
    raw = raw_request("127.0.0.1", gateway.port, build("GET", f"/echo?{token}", host=None,
                                                       version="HTTP/1.0"))
    (resp,) = parse_responses(raw)
    assert resp.status == 200
    assert resp.header("connection") == "close"
    (record,) = upstream.records(token)
    assert record.version == "HTTP/1.1"
    assert record.header("host") == f"127.0.0.1:{upstream.port}"


def test_higher_http1_minor_version_is_served_as_http11(gateway: GatewayProcess,
                                                        upstream: ScriptedUpstream, token: str) -> None:
    """RFC 9112 2.5: a request line with ``HTTP/1.2`` (a higher minor version of HTTP/1)
    is treated as HTTP/1.1: answered with ``HTTP/1.1 200``, kept alive like 1.1 (a second
    request on the connection is answered too) and forwarded as HTTP/1.1."""
    with keepalive(gateway) as conn:
        conn.send(build("GET", f"/echo?{token}-a", version="HTTP/1.2"))
        first = conn.read_response()
        conn.send(build("GET", f"/echo?{token}-b", version="HTTP/1.9"))
        second = conn.read_response()
    assert conn.received.startswith(b"HTTP/1.1 200 ")
    assert [first.status, second.status] == [200, 200]
    assert first.header("connection") is None
    assert [r.version for r in upstream.records(token)] == ["HTTP/1.1", "HTTP/1.1"]


def test_higher_http1_minor_version_still_needs_a_host(gateway: GatewayProcess,
                                                       upstream: ScriptedUpstream, token: str) -> None:
    """An ``HTTP/1.2`` request is held to HTTP/1.1's rules: without a Host header it is
    refused with 400 and never forwarded."""
    responses = send_closing(gateway, build("GET", f"/echo?{token}", host=None, version="HTTP/1.2"))
    assert len(responses) == 1
    assert_problem(responses[0], 400, closes=True)
    assert not upstream.saw(token)


@pytest.mark.parametrize("version", ["HTTP/2.0", "HTTP/3.0", "HTTP/0.9", "HTTP/0.1"])
def test_other_major_versions_are_refused(gateway: GatewayProcess, upstream: ScriptedUpstream,
                                          token: str, version: str) -> None:
    """HTTP/2.0 (or 3.0) in an HTTP/1 request line, and versions below 1.0, are not
    HTTP/1.x: refused with 400 problem+json, the connection closed, nothing forwarded."""
    responses = send_closing(gateway, build("GET", f"/echo?{token}", version=version))
    assert len(responses) == 1
    assert_problem(responses[0], 400, closes=True)
    assert not upstream.saw(token)


def test_http10_client_gets_unknown_length_body_close_delimited(gateway: GatewayProcess,
                                                                token: str) -> None:
    """An HTTP/1.0 client cannot read chunked: a streamed upstream body of unknown length
    reaches it without Transfer-Encoding, delimited by the close of the connection."""
    raw = raw_request("127.0.0.1", gateway.port,
                      build("GET", f"/chunked?{token}", host=None, version="HTTP/1.0"))
    (resp,) = parse_responses(raw)
    assert resp.status == 200
    assert resp.header("transfer-encoding") is None
    assert resp.body == b"hello chunked world"


def test_half_closed_client_still_gets_its_responses(gateway: GatewayProcess, token: str) -> None:
    """A client that sends two whole requests and then shuts down its write side
    (SHUT_WR) still receives both responses before the gateway closes."""
    with keepalive(gateway) as conn:
        conn.send(build("GET", f"/slow?ms=100&{token}-1") + build("GET", f"/echo?{token}-2"))
        conn.shutdown_write()
        responses = parse_responses(conn.read_until_close())
    assert [r.status for r in responses] == [200, 200]
    assert responses[1].json()["target"] == f"/echo?{token}-2"


def test_half_closed_client_with_cut_body_gets_400(gateway: GatewayProcess,
                                                   upstream: ScriptedUpstream, token: str) -> None:
    """A client that announces 100 body bytes, sends 10 and shuts down its write side gets
    400 (the body was cut short); no complete request reaches the upstream."""
    with keepalive(gateway) as conn:
        conn.send(build("POST", f"/echo?{token}", [("Content-Length", "100")], b"0123456789"))
        time.sleep(0.1)
        conn.shutdown_write()
        responses = parse_responses(conn.read_until_close())
    assert len(responses) == 1
    assert_problem(responses[0], 400, closes=True)
    assert upstream.records(token) == []


# -- HEAD, 100-continue, framing -----------------------------------------------------------


def test_head_has_no_body_and_keeps_the_connection_framed(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """HEAD: the response has no body, and the next request on the same connection is
    framed correctly (the announced length is not mistaken for a body to skip)."""
    with keepalive(gateway) as conn:
        conn.send(build("HEAD", f"/head-test?{token}"))
        head = conn.read_response("HEAD")
        conn.send(build("GET", f"/head-test?{token}"))
        get = conn.read_response()
    assert head.status == 200
    assert head.body == b""
    assert get.body == b"hello world"
    assert [r.method for r in upstream.records(token)] == ["HEAD", "GET"]


def test_head_keeps_the_upstream_content_length(gateway: GatewayProcess, token: str) -> None:
    """HEAD: the upstream's Content-Length (the size a GET would return, RFC 9110
    section 9.3.2) reaches the client unchanged."""
    with keepalive(gateway) as conn:
        conn.send(build("HEAD", f"/head-test?{token}"))
        head = conn.read_response("HEAD")
    assert head.status == 200
    assert head.header("content-length") == "11"
    assert head.body == b""


def test_expect_100_continue(gateway: GatewayProcess, upstream: ScriptedUpstream, token: str) -> None:
    """``Expect: 100-continue``: the client gets ``100 Continue`` before it sends the body,
    then the final response; the upstream gets the body but not the Expect header."""
    with keepalive(gateway) as conn:
        conn.send(build("POST", f"/echo?{token}", [("Content-Length", "5"),
                                                   ("Expect", "100-continue")]))
        interim = conn.read_response(skip_informational=False)
        assert (interim.status, interim.reason) == (100, "Continue")
        conn.send(b"hello")
        final = conn.read_response()
    assert final.status == 200
    assert final.json()["body"] == "hello"
    (record,) = upstream.records(token)
    assert record.header("expect") is None
    assert record.body == b"hello"


def test_expect_100_continue_on_undeclared_route_gets_404_without_100(
    strict_gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """``Expect: 100-continue`` to a path no route declares: the final 404 comes without
    a ``100 Continue`` first (the body is not wanted), and the connection is closed
    because the body was never read."""
    with keepalive(strict_gateway) as conn:
        conn.send(build("POST", f"/nowhere?{token}", [("Content-Length", "5"),
                                                      ("Expect", "100-continue")]))
        resp = conn.read_response(skip_informational=False)
        assert_problem(resp, 404, closes=True)
        assert conn.is_closed_by_peer()
    assert b"100 Continue" not in conn.received
    assert not upstream.saw(token)


def test_expect_100_continue_over_body_limit_gets_413_without_100(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """``Expect: 100-continue`` with a Content-Length over the route's limit: 413 at once,
    no ``100 Continue``, nothing forwarded."""
    with keepalive(gateway) as conn:
        conn.send(build("POST", f"/limited?{token}", [("Content-Length", "5000"),
                                                      ("Expect", "100-continue")]))
        resp = conn.read_response(skip_informational=False)
    assert_problem(resp, 413, closes=True)
    assert b"100 Continue" not in conn.received
    assert not upstream.saw(token)


def test_chunked_request_received_whole_is_forwarded_with_length(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """A chunked request body that arrives whole is de-chunked and forwarded with a
    Content-Length (Bastion's own framing; the client's Transfer-Encoding is not passed on)."""
    data = build("POST", f"/echo?{token}", [("Transfer-Encoding", "chunked")],
                 _chunked(b"hello ", b"chunked ", b"world"))
    resp = one_raw(gateway, data)
    assert resp.status == 200
    (record,) = upstream.records(token)
    assert record.framing == "length"
    assert record.header("content-length") == "19"
    assert record.header("transfer-encoding") is None
    assert record.body == b"hello chunked world"


def test_chunked_request_streamed_is_forwarded_chunked(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """A chunked request body that trickles in is streamed to the upstream chunked, as it
    arrives, and the upstream reassembles exactly the client's bytes."""
    parts = [b"alpha-", b"beta-", b"gamma"]
    with keepalive(gateway) as conn:
        conn.send(build("POST", f"/echo?{token}", [("Transfer-Encoding", "chunked")]))
        for part in parts:
            time.sleep(0.05)
            conn.send(b"%x\r\n%b\r\n" % (len(part), part))
        conn.send(b"0\r\n\r\n")
        resp = conn.read_response()
    assert resp.status == 200
    (record,) = upstream.records(token)
    assert record.framing == "chunked"
    assert record.header("content-length") is None
    assert record.body == b"alpha-beta-gamma"


def test_content_length_body_streamed_keeps_its_length(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """A body with Content-Length that arrives in pieces is streamed with the same
    Content-Length (not re-framed as chunked)."""
    with keepalive(gateway) as conn:
        conn.send(build("PUT", f"/echo?{token}", [("Content-Length", "10")]))
        time.sleep(0.05)
        conn.send(b"01234")
        time.sleep(0.05)
        conn.send(b"56789")
        resp = conn.read_response()
    assert resp.status == 200
    (record,) = upstream.records(token)
    assert (record.framing, record.header("content-length"), record.body) == ("length", "10",
                                                                             b"0123456789")


def test_chunked_upstream_response_is_rechunked(gateway: GatewayProcess, token: str) -> None:
    """A chunked upstream response streams to an HTTP/1.1 client chunked, with the same
    body, and the connection stays usable."""
    with keepalive(gateway) as conn:
        conn.send(build("GET", f"/chunked?{token}"))
        resp = conn.read_response()
        assert resp.framing == "chunked"
        assert resp.body == b"hello chunked world"
        conn.send(build("GET", f"/echo?{token}"))
        assert conn.read_response().status == 200


def test_close_delimited_upstream_response(gateway: GatewayProcess, token: str) -> None:
    """An upstream body delimited by closing its connection reaches an HTTP/1.1 client
    whole and chunked, and the client's connection stays open for the next request."""
    with keepalive(gateway) as conn:
        conn.send(build("GET", f"/close?{token}"))
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.body == b"a body delimited by the close of the connection"
        assert resp.framing == "chunked"
        conn.send(build("GET", f"/echo?{token}"))
        assert conn.read_response().status == 200


# -- timeouts ------------------------------------------------------------------------------


def test_idle_connection_is_closed(timeouts_gateway: GatewayProcess) -> None:
    """A connection that sends nothing is closed after the idle timeout (1 s), silently."""
    with keepalive(timeouts_gateway) as conn:
        started = time.monotonic()
        assert conn.is_closed_by_peer(wait=3.0)
        assert 0.8 < time.monotonic() - started < 2.5
        assert conn.received == b""


def test_idle_keep_alive_connection_is_closed(timeouts_gateway: GatewayProcess,
                                              token: str) -> None:
    """After a response, a kept-alive connection with no next request is closed after the
    idle timeout."""
    with keepalive(timeouts_gateway) as conn:
        conn.send(build("GET", f"/echo?{token}"))
        assert conn.read_response().status == 200
        started = time.monotonic()
        assert conn.is_closed_by_peer(wait=3.0)
        assert 0.8 < time.monotonic() - started < 2.5


def test_slowloris_head_gets_408(timeouts_gateway: GatewayProcess, upstream: ScriptedUpstream,
                                 token: str) -> None:
    """Slowloris: a head that trickles in a byte at a time never completes within the
    header timeout (0.5 s from its first byte): 408 problem+json and the connection is
    closed; nothing reaches the upstream."""
    head = f"GET /echo?{token} HTTP/1.1\r\nHost: a\r\nX-Slow: ".encode()
    with keepalive(timeouts_gateway) as conn:
        conn.send(head)
        started = time.monotonic()
        while time.monotonic() - started < 1.5:
            readable, _, _ = select.select([conn.sock], [], [], 0.05)
            if readable:
                break
            conn.send(b"a")
        responses = parse_responses(conn.read_until_close())
    assert time.monotonic() - started < 1.5
    assert len(responses) == 1
    assert_problem(responses[0], 408, closes=True)
    assert not upstream.saw(token)


def test_half_sent_head_gets_408(timeouts_gateway: GatewayProcess, upstream: ScriptedUpstream,
                                 token: str) -> None:
    """Half a request head and then silence: 408 after the header timeout, connection
    closed, nothing forwarded."""
    with keepalive(timeouts_gateway) as conn:
        conn.send(f"GET /echo?{token} HTTP/1.1\r\nHost: a\r\n".encode())
        started = time.monotonic()
        responses = parse_responses(conn.read_until_close())
        elapsed = time.monotonic() - started
    assert 0.3 < elapsed < 1.5
    assert len(responses) == 1
    assert_problem(responses[0], 408, closes=True)
    assert not upstream.saw(token)


def test_stalled_body_gets_408(timeouts_gateway: GatewayProcess, upstream: ScriptedUpstream,
                               token: str) -> None:
    """A body that stops half-way: 408 after the body timeout (0.5 s), the connection is
    closed, and the upstream never receives a complete request."""
    with keepalive(timeouts_gateway) as conn:
        conn.send(build("POST", f"/echo?{token}", [("Content-Length", "10")], b"01234"))
        started = time.monotonic()
        responses = parse_responses(conn.read_until_close())
        elapsed = time.monotonic() - started
    assert 0.3 < elapsed < 1.5
    assert len(responses) == 1
    assert_problem(responses[0], 408, closes=True)
    assert upstream.records(token) == []


# -- large bodies and back-pressure --------------------------------------------------------


def test_large_upload_streams_intact(gateway: GatewayProcess, upstream: ScriptedUpstream,
                                     token: str) -> None:
    """A 5 MB upload goes through byte for byte (same length and SHA-256 at the upstream)."""
    body = pattern(5 * MB)[::-1]
    resp = one(gateway, "POST", f"/echo?{token}", body=body, timeout=15)
    assert resp.status == 200
    assert resp.json()["body_len"] == len(body)
    assert resp.json()["body_sha256"] == sha256(body)
    (record,) = upstream.records(token)
    assert record.framing == "length"


def test_large_chunked_upload_streams_intact(gateway: GatewayProcess, upstream: ScriptedUpstream,
                                             token: str) -> None:
    """A 5 MB chunked upload sent in 256 KiB chunks arrives intact."""
    body = pattern(5 * MB)
    with keepalive(gateway, timeout=15) as conn:
        conn.send(build("POST", f"/echo?{token}", [("Transfer-Encoding", "chunked")]))
        for i in range(0, len(body), 256 * 1024):
            conn.send(_chunked(body[i : i + 256 * 1024])[:-5])
        conn.send(b"0\r\n\r\n")
        resp = conn.read_response()
    assert resp.status == 200
    assert (resp.json()["body_len"], resp.json()["body_sha256"]) == (len(body), sha256(body))


def test_large_download_streams_intact(gateway: GatewayProcess, token: str) -> None:
    """A 5 MB download arrives intact with the upstream's Content-Length."""
    resp = one(gateway, "GET", f"/big?n={5 * MB}&{token}", timeout=15)
    assert resp.status == 200
    assert resp.header("content-length") == str(5 * MB)
    assert hashlib.sha256(resp.body).hexdigest() == sha256(pattern(5 * MB))


def test_slow_reading_client_gets_every_byte(gateway: GatewayProcess, token: str) -> None:
    """A client that reads a 4 MB download slowly (64 KiB every 15 ms) still gets every
    byte intact: the gateway pauses the upstream instead of dropping or timing out."""
    n = 4 * MB
    with keepalive(gateway, timeout=15) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        conn.send(build("GET", f"/big?n={n}&{token}", [("Connection", "close")]))
        data = bytearray()
        while True:
            chunk = conn.read_some(64 * 1024)
            if not chunk:
                break
            data += chunk
            time.sleep(0.015)
    (resp,) = parse_responses(bytes(data))
    assert resp.status == 200
    assert len(resp.body) == n
    assert resp.body == pattern(n)


def _tcp_buffer_max(name: str) -> int:
    """The kernel's autotuning maximum for TCP send (tcp_wmem) or receive (tcp_rmem) buffers."""
    try:
        return int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 6 * MB  # Linux's usual default maximum


def test_download_backpressure_pauses_the_upstream(gateway: GatewayProcess,
                                                   upstream: ScriptedUpstream, token: str) -> None:
    """Back-pressure to the upstream: while the client reads nothing of a 48 MB download,
    the gateway stops reading the upstream, so the upstream stalls once the socket buffers
    between them are full (it cannot send it all); once the client reads, everything
    arrives intact. The pause is the client's doing, so it does not count as upstream
    silence: the upstream read timeout does not cut the download."""
    n = 48 * MB
    # What the kernel may buffer between upstream and gateway: the upstream's send buffer
    # and the gateway's receive buffer, each up to its autotuning maximum (here 4 and
    # 32 MB), plus a few MB in the gateway's own and the client-side buffers.
    bound = _tcp_buffer_max("tcp_wmem") + _tcp_buffer_max("tcp_rmem") + 6 * MB
    assert bound < n, "this machine's TCP buffers are too large for the test's download"
    with keepalive(gateway, timeout=20) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        conn.send(build("GET", f"/big?n={n}&{token}", [("Connection", "close")]))
        conn.read_some(1024)
        time.sleep(1.0)
        stalled_at = upstream.bytes_sent(token)
        time.sleep(1.0)  # 2 s paused in all: longer than the upstream read timeout (1.5 s)
        assert upstream.bytes_sent(token) == stalled_at  # the upstream is stalled...
        assert stalled_at <= bound, stalled_at  # ...having sent no more than buffers hold
        data = bytearray(conn.received)
        while chunk := conn.read_some(1024 * 1024):
            data += chunk
    (resp,) = parse_responses(bytes(data))
    assert len(resp.body) == n
    assert hashlib.sha256(resp.body).digest() == hashlib.sha256(pattern(n)).digest()


def test_upload_to_slow_reading_upstream_arrives_intact(gateway: GatewayProcess, token: str) -> None:
    """Back-pressure from the upstream: a 3 MB upload to an upstream that reads slowly is
    held back (not buffered without bound, not failed) and arrives intact."""
    body = pattern(3 * MB)[1:] + b"!"
    resp = one(gateway, "POST", f"/slowread?{token}", body=body, timeout=20)
    assert resp.status == 200
    assert (resp.json()["body_len"], resp.json()["body_sha256"]) == (len(body), sha256(body))


def test_slow_upload_longer_than_read_timeout_succeeds(gateway: GatewayProcess,
                                                       upstream: ScriptedUpstream,
                                                       token: str) -> None:
    """The upstream read timeout (1.5 s here) measures the upstream's silence after the
    request was sent: a client whose upload takes 2.5 s (but never pauses longer than the
    body timeout) gets its 200."""
    pieces = [bytes([65 + i]) * 1000 for i in range(10)]
    with keepalive(gateway, timeout=10) as conn:
        conn.send(build("POST", f"/echo?{token}", [("Content-Length", str(10 * 1000))]))
        for piece in pieces:
            time.sleep(0.25)
            try:
                conn.send(piece)
            except OSError:
                break  # the gateway gave up on the request: its answer says why
        resp = conn.read_response()
    assert resp.status == 200, resp.body
    assert resp.json()["body_sha256"] == sha256(b"".join(pieces))


# -- upgrades, headers, request IDs ----------------------------------------------------------


def test_websocket_upgrade_gets_501(gateway: GatewayProcess, upstream: ScriptedUpstream,
                                    token: str) -> None:
    """A WebSocket upgrade request is answered 501 problem+json (not supported yet), the
    connection is closed, and nothing reaches the upstream."""
    data = build("GET", f"/ws?{token}", [
        ("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ])
    responses = send_closing(gateway, data)
    assert len(responses) == 1
    assert_problem(responses[0], 501, closes=True)
    assert not upstream.saw(token)


def test_hop_by_hop_request_headers_are_removed(gateway: GatewayProcess, upstream: ScriptedUpstream,
                                                token: str) -> None:
    """Hop-by-hop request headers (the standard ones and those named in ``Connection``)
    are not forwarded; end-to-end headers are."""
    resp = one_raw(gateway, build("GET", f"/echo?{token}", [
        ("Connection", "keep-alive, X-Drop-Me"), ("X-Drop-Me", "secret"), ("Keep-Alive", "300"),
        ("TE", "trailers"), ("Trailer", "X-Checksum"), ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("Proxy-Connection", "keep-alive"), ("X-End-To-End", "kept"),
    ]))
    assert resp.status == 200
    (record,) = upstream.records(token)
    names = {k.lower() for k, _ in record.headers}
    assert not names & {"x-drop-me", "keep-alive", "te", "trailer", "proxy-authorization",
                        "proxy-connection", "connection", "transfer-encoding", "upgrade"}
    assert record.header("x-end-to-end") == "kept"


def test_hop_by_hop_response_headers_are_removed(gateway: GatewayProcess, token: str) -> None:
    """Hop-by-hop response headers from the upstream (Keep-Alive, Proxy-Authenticate and
    a header named in its ``Connection``) do not reach the client; others do."""
    resp = one_raw(gateway, build("GET", f"/hop?{token}"))
    assert resp.status == 200
    assert resp.body == b"hop"
    assert not resp.header_names() & {"x-hop-secret", "keep-alive", "proxy-authenticate"}
    assert resp.header("connection") is None
    assert resp.header("x-end-to-end") == "kept"


def test_forwarding_headers_from_untrusted_client_are_replaced(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """From a client that is not a trusted proxy, incoming X-Forwarded-*, Forwarded,
    X-Real-IP and X-Request-ID are dropped; the upstream gets Bastion's own, once each."""
    resp = one_raw(gateway, build("GET", f"/echo?{token}", [
        ("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.test"), ("Forwarded", "for=6.6.6.6;proto=https"),
        ("X-Real-IP", "6.6.6.6"), ("X-Request-ID", "attacker-chosen"),
    ], host="api.example.test"))
    assert resp.status == 200
    request_id = resp.header("x-request-id")
    assert request_id is not None
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    (record,) = upstream.records(token)
    assert record.header_all("x-forwarded-for") == ["127.0.0.1"]
    assert record.header_all("x-forwarded-proto") == ["http"]
    assert record.header_all("x-forwarded-host") == ["api.example.test"]
    assert record.header_all("forwarded") == ['for=127.0.0.1;proto=http;host="api.example.test"']
    assert record.header_all("x-real-ip") == []
    assert record.header_all("x-request-id") == [request_id]
    assert b"6.6.6.6" not in record.raw_head


def test_forwarding_headers_from_trusted_proxy_are_believed(
    trusting_gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """From a trusted proxy (127.0.0.0/8 here), X-Forwarded-For and X-Forwarded-Proto are
    believed: the client is the right-most untrusted address, the chain is extended, and
    the access log names that client."""
    resp = one_raw(trusting_gateway, build("GET", f"/echo?{token}", [
        ("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 127.0.0.9"), ("X-Forwarded-Proto", "https"),
    ]))
    assert resp.status == 200
    (record,) = upstream.records(token)
    assert record.header_all("x-forwarded-for") == ["6.6.6.6, 203.0.113.7, 127.0.0.9, 127.0.0.1"]
    assert record.header_all("x-forwarded-proto") == ["https"]
    assert record.header_all("forwarded") == ['for=203.0.113.7;proto=https;host="gw.test"']
    log = trusting_gateway.wait_for_access_record(
        lambda r: r["request_id"] == resp.header("x-request-id"))
    assert log["client"] == "203.0.113.7"


def test_request_id_from_trusted_proxy_is_kept(trusting_gateway: GatewayProcess,
                                               upstream: ScriptedUpstream, token: str) -> None:
    """A trusted proxy's X-Request-ID is used as the request ID: returned to the client,
    propagated to the upstream, and written to the access log."""
    resp = one_raw(trusting_gateway, build("GET", f"/echo?{token}",
                                           [("X-Request-ID", "lb-1234-abcd")]))
    assert resp.header("x-request-id") == "lb-1234-abcd"
    (record,) = upstream.records(token)
    assert record.header_all("x-request-id") == ["lb-1234-abcd"]
    trusting_gateway.wait_for_access_record(lambda r: r["request_id"] == "lb-1234-abcd")


def test_invalid_request_id_from_trusted_proxy_is_replaced(
    trusting_gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """Even from a trusted proxy, an X-Request-ID with characters outside the safe set (here
    a quote and spaces, which could forge log fields) is replaced by a generated one."""
    resp = one_raw(trusting_gateway, build("GET", f"/echo?{token}",
                                           [("X-Request-ID", 'x" injected="1')]))
    request_id = resp.header("x-request-id")
    assert request_id is not None
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    (record,) = upstream.records(token)
    assert record.header_all("x-request-id") == [request_id]


def test_request_id_is_generated_per_request(gateway: GatewayProcess, upstream: ScriptedUpstream,
                                             token: str) -> None:
    """Each request gets its own generated ID, returned to the client and sent upstream."""
    ids = []
    with keepalive(gateway) as conn:
        for i in range(3):
            conn.send(build("GET", f"/echo?{token}-{i}"))
            ids.append(conn.read_response().header("x-request-id"))
    assert len(set(ids)) == 3
    assert [r.header("x-request-id") for r in upstream.records(token)] == ids


# -- body limits -----------------------------------------------------------------------------


def test_content_length_over_limit_gets_413_at_once(gateway: GatewayProcess,
                                                    upstream: ScriptedUpstream, token: str) -> None:
    """A Content-Length over the route's limit (1000 bytes on /limited) is answered 413
    from the head alone, before any of the body is sent, and the connection closes."""
    with keepalive(gateway, timeout=3) as conn:
        conn.send(build("POST", f"/limited?{token}", [("Content-Length", "100000")]))
        resp = conn.read_response()
        assert conn.is_closed_by_peer()
    assert_problem(resp, 413, closes=True)
    assert not upstream.saw(token)


def test_small_content_length_over_limit_gets_413_without_waiting_for_body(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """A Content-Length of 5000 on a 1000-byte route is refused from the head alone: the
    413 arrives without the client sending any of the body."""
    with keepalive(gateway, timeout=2) as conn:
        conn.send(build("POST", f"/limited?{token}", [("Content-Length", "5000")]))
        resp = conn.read_response()
    assert_problem(resp, 413)
    assert not upstream.saw(token)


def test_streamed_chunked_body_over_limit_gets_413(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """A chunked body has no announced length: it streams until it passes the route's
    limit (1000 bytes), then the client gets 413; the upstream never gets a complete
    request."""
    with keepalive(gateway) as conn:
        conn.send(build("POST", f"/limited?{token}", [("Transfer-Encoding", "chunked")]))
        for _ in range(4):
            time.sleep(0.05)
            conn.send(b"190\r\n" + b"x" * 400 + b"\r\n")
        conn.send(b"0\r\n\r\n")
        resp = conn.read_response()
    assert_problem(resp, 413)
    assert upstream.records(token) == []


def test_chunked_body_over_limit_gets_413_once_exceeded(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """The 413 for a chunked body is sent as soon as the limit is passed, even if the
    client then waits for an answer instead of sending the rest of its body."""
    with keepalive(gateway, timeout=2) as conn:
        conn.send(build("POST", f"/limited?{token}", [("Transfer-Encoding", "chunked")]))
        for _ in range(3):
            time.sleep(0.05)
            conn.send(b"190\r\n" + b"x" * 400 + b"\r\n")
        resp = conn.read_response()
    assert_problem(resp, 413, closes=True)
    assert upstream.records(token) == []


def test_chunked_body_over_limit_in_one_write_is_never_forwarded(
    gateway: GatewayProcess, upstream: ScriptedUpstream, token: str
) -> None:
    """A whole chunked body over the limit, received at once, is refused with 413 before
    anything is sent upstream; the body was read in full, so the connection stays usable."""
    data = build("POST", f"/limited?{token}", [("Transfer-Encoding", "chunked")],
                 _chunked(b"y" * 600, b"z" * 600))
    with keepalive(gateway) as conn:
        conn.send(data)
        assert_problem(conn.read_response(), 413, closes=False)
        conn.send(build("GET", f"/echo?{token}-next"))
        assert conn.read_response().status == 200
    assert not upstream.saw(f"/limited?{token}")


def test_body_at_limit_is_accepted(gateway: GatewayProcess, token: str) -> None:
    """A body of exactly the route's limit (1000 bytes) is forwarded."""
    resp = one(gateway, "POST", f"/limited?{token}", body=b"k" * 1000)
    assert resp.status == 200
    assert resp.json()["body_len"] == 1000


def test_concurrent_clients_do_not_mix(gateway: GatewayProcess, token: str) -> None:
    """Eight clients at once, each with its own body, each get their own answer."""
    results: dict[int, bytes] = {}

    def client(i: int) -> None:
        body = f"client-{i}-".encode() * 100
        resp = one(gateway, "POST", f"/echo?{token}-{i}", body=body)
        results[i] = hashlib.sha256(body).hexdigest().encode() if (
            resp.json()["body_sha256"] == sha256(body)) else b"mismatch"

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == list(range(8))
    assert b"mismatch" not in results.values()


def test_a_refusal_before_the_request_is_built_records_the_forwarded_client(
    trusting_gateway: GatewayProcess, token: str
) -> None:
    """A request refused from its head alone (a GET with a body, before the request the stages
    see is built) is recorded with the client the trusted proxy forwarded for, not the
    proxy's own address: the detectors count refusals by that client."""
    data = build("GET", f"/echo?{token}", [("X-Forwarded-For", "203.0.113.9"), ("Content-Length", "2")], b"{}")
    resp = one_raw(trusting_gateway, data)
    assert resp.status == 400
    request_id = resp.header("x-request-id")
    record = trusting_gateway.wait_for_access_record(lambda r: r.get("request_id") == request_id)
    assert record["reason"] == "http.body_not_allowed"
    assert record["client"] == "203.0.113.9"
