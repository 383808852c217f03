"""The request-head phase: a stage that needs only the head decides before the body is read.

The gateway runs in this process (its listener on an event loop in a thread) so that a test
can put a stage of its own in a route's chain; the clients and the upstream are real sockets
on 127.0.0.1. The head stage here refuses requests without an ``x-ticket`` header, on a
route that takes bodies of up to 100 MB.
"""

from __future__ import annotations

import select
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.pipeline.stage import HeadStage, RequestStage, StageConfig
from bastion.types import Block, Exchange

from .conftest import SHARED_UPSTREAM, gateway_config
from .inprocess import InProcessGateway
from .scripted import ScriptedUpstream

MB = 1024 * 1024
UPLOAD = 50 * MB
#: What a client may push before it sees the answer: the kernel's socket buffers on both
#: sides, and what the gateway read with the head (at most one read). Far below UPLOAD.
SOCKET_BUFFERS = 16 * MB


class TicketCheck(HeadStage):
    """Refuses a request without an ``x-ticket`` header, from the head alone."""

    def __init__(self) -> None:
        super().__init__("ticket", StageConfig())
        #: Whether the body was already there when the hook ran (it must never be).
        self.saw_body: list[bool] = []

    def on_request_head(self, exchange: Exchange) -> Block | None:
        self.saw_body.append(exchange.request.body is not None)
        if exchange.request.header("x-ticket") is None:
            return Block(403, "Forbidden", "A ticket is required.", "ticket.missing")
        return None


class BodyLength(RequestStage):
    """A body stage: it needs the whole body, and notes the length it got."""

    needs_request_body = True

    def __init__(self) -> None:
        super().__init__("length", StageConfig())
        self.lengths: list[int] = []

    def on_request(self, exchange: Exchange) -> None:
        self.lengths.append(len(exchange.request.body or b""))


Setup = tuple[InProcessGateway, TicketCheck, BodyLength]


@pytest.fixture
def ticket_gateway(upstream: ScriptedUpstream, tmp_path: Path) -> Iterator[Setup]:
    """The in-process gateway: a ticket check (head) and a body stage on a public route
    taking bodies of up to 100 MB."""
    config = gateway_config(
        upstream.url,
        routes=[{"path": "/", "prefix": True, "public": True, "max_body_bytes": 100 * MB}],
        upstream_options=SHARED_UPSTREAM,
    )
    ticket, length = TicketCheck(), BodyLength()
    with InProcessGateway(config, tmp_path, [ticket, length]) as gw:
        yield gw, ticket, length


def _head(token: str, length: int, *extra: str) -> bytes:
    lines = [f"POST /{token} HTTP/1.1", "Host: gw.test", f"Content-Length: {length}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _upload_until_answered(port: int, head: bytes, length: int) -> tuple[bytes, int]:
    """Send ``head``, then the body as fast as the socket takes it, stopping as soon as any
    answer arrives (as a client that reads while it writes does). Returns the answer's
    first bytes and how many body bytes were sent."""
    piece = b"x" * (64 * 1024)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        while sent < length:
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable:
                break
            if writable:
                try:
                    sent += sock.send(piece[: length - sent])
                except BlockingIOError:
                    continue
        sock.setblocking(True)
        answer = sock.recv(65536)
    return answer, sent


def test_head_stage_refuses_a_50_mb_upload_before_reading_it(ticket_gateway: Setup, upstream: ScriptedUpstream) -> None:
    """Without ``Expect``, a client that starts uploading 50 MB right after the head gets
    the head stage's 403 while it has sent at most a few socket buffers of it; the gateway
    consumed none of the body (``bytes_in`` 0), the body stage never ran, and nothing
    reached the upstream."""
    gw, ticket, length = ticket_gateway
    token = uuid.uuid4().hex
    answer, sent = _upload_until_answered(gw.port, _head(token, UPLOAD), UPLOAD)
    assert answer.startswith(b"HTTP/1.1 403 "), answer[:200]
    assert b"connection: close" in answer.lower()
    assert sent < SOCKET_BUFFERS, f"{sent} body bytes were sent before the answer"
    assert ticket.saw_body == [False]
    (record,) = [r for r in gw.access_records() if token in r["path"]]
    assert record["status"] == 403 and record["blocked_by"] == "ticket" and record["bytes_in"] == 0
    assert length.lengths == []
    assert not upstream.saw(token)


def test_head_stage_refuses_before_100_continue(ticket_gateway: Setup, upstream: ScriptedUpstream) -> None:
    """With ``Expect: 100-continue`` the client sends no body at all: the first thing it
    reads is the 403 (never a ``100 Continue``), and the connection is closed after it."""
    gw, _, length = ticket_gateway
    token = uuid.uuid4().hex
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(_head(token, UPLOAD, "Expect: 100-continue"))
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, "the connection closed without an answer"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 403 "), answer[:200]
        assert b"100 Continue" not in answer
        rest = b""
        while chunk := sock.recv(65536):  # the problem document, then the close
            rest += chunk
    assert b"A ticket is required." in answer + rest
    assert length.lengths == []
    (record,) = [r for r in gw.access_records() if token in r["path"]]
    assert record["status"] == 403 and record["bytes_in"] == 0
    assert not upstream.saw(token)


@pytest.mark.parametrize("expect", [False, True])
def test_head_stage_that_lets_through_leaves_the_body_to_the_body_stages(
    ticket_gateway: Setup, upstream: ScriptedUpstream, expect: bool
) -> None:
    """A head hook that continues runs before the body is read (it sees no body); the body
    stage then gets all of it, ``100 Continue`` is sent when asked for, and the upstream
    receives the whole body."""
    gw, ticket, length = ticket_gateway
    token = uuid.uuid4().hex
    body = b"y" * (2 * MB)
    extra = ["x-ticket: 1", *(["Expect: 100-continue"] if expect else [])]
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(_head(token, len(body), *extra))
        if expect:
            assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert ticket.saw_body == [False]
    assert length.lengths == [len(body)]
    (received,) = upstream.records(token)
    assert received.body == body
    (record,) = [r for r in gw.access_records() if token in r["path"]]
    assert record["bytes_in"] == len(body)
