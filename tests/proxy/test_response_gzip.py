"""gzip-encoded upstream bodies, for the stages that see the body (through the real proxy).

The stages see the decoded body, without Content-Encoding. A body they left as it was goes
to the client as the upstream's own compressed bytes; a changed one goes plain (no
Content-Encoding): re-compressing would cost CPU on every byte, and every client takes an
identity body. Decoding is bounded: a body known in full may not decode beyond the route's
``max_response_body_bytes`` (a decompression bomb is a body over the limit), a streamed one
beyond 100 times its compressed size (plus 1 MiB). A body that is not valid gzip is the
upstream's failure (502, or a cut stream); a coding Bastion does not decode (br) cannot be
inspected and gets the route's ``response_body_over_limit``.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from bastion.pipeline.stage import ResponseBodyStage, ResponseStage, StageConfig
from bastion.testing import RawConnection
from bastion.types import Block, Exchange

from .conftest import SHARED_UPSTREAM, gateway_config
from .inprocess import InProcessGateway
from .scripted import ScriptedUpstream, gz_text

LIMIT = 1024 * 1024


class Whole(ResponseStage):
    """Needs the whole body; replaces ``find`` with ``mark`` in it (if ``find``)."""

    needs_response_body = True

    def __init__(self, find: bytes = b"", mark: bytes = b"") -> None:
        super().__init__("whole", StageConfig())
        self.find, self.mark = find, mark
        self.seen: list[tuple[bytes, str | None]] = []

    def on_response(self, exchange: Exchange) -> Block | None:
        resp = exchange.response
        assert resp is not None and resp.body is not None
        self.seen.append((resp.body, dict(resp.headers).get("content-encoding")))
        if self.find:
            resp.body = resp.body.replace(self.find, self.mark)
        return None


class Redact(ResponseBodyStage):
    """Replaces ``secret`` in the body as it streams."""

    def __init__(self, secret: bytes, mark: bytes) -> None:
        super().__init__("redact", StageConfig())
        self.secret, self.mark = secret, mark
        self.overlap = len(secret) - 1

    def on_response_chunk(self, exchange: Exchange, chunk: bytes, final: bool) -> bytes:
        return chunk.replace(self.secret, self.mark)


def _gateway(
    upstream: ScriptedUpstream, folder: Path, stages: list[Any], over_limit: str = "block"
) -> InProcessGateway:
    limits = {"max_response_body_bytes": LIMIT, "response_body_over_limit": over_limit}
    config = gateway_config(upstream.url, upstream_options=SHARED_UPSTREAM, listen={"limits": limits})
    return InProcessGateway(config, folder, stages)


def _get(gw: InProcessGateway, target: str) -> tuple[int, dict[str, str], bytes, str]:
    with RawConnection("127.0.0.1", gw.port, timeout=20) as conn:
        conn.send(f"GET {target} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
        resp = conn.read_response()
    return resp.status, {k.lower(): v for k, v in resp.headers}, resp.body, resp.framing


@pytest.mark.parametrize("chunked", ["0", "1"])
def test_an_unchanged_body_goes_as_it_came(upstream: ScriptedUpstream, tmp_path: Path, chunked: str) -> None:
    """A whole-body stage sees the decoded text without Content-Encoding; as it changed
    nothing, the client gets the upstream's gzip bytes, Content-Encoding and all."""
    whole = Whole()
    with _gateway(upstream, tmp_path, [whole]) as gw:
        status, headers, body, _ = _get(gw, f"/gz?text=abc&n=1000&chunked={chunked}")
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == gz_text(b"abc", 1000)
    assert whole.seen == [(gz_text(b"abc", 1000), None)]


def test_a_changed_whole_body_goes_plain(upstream: ScriptedUpstream, tmp_path: Path) -> None:
    """A whole-body stage that changes the decoded body: the client gets the changed body
    plain, without Content-Encoding, with its own length."""
    with _gateway(upstream, tmp_path, [Whole(b"secret", b"******")]) as gw:
        status, headers, body, framing = _get(gw, "/gz?text=a+secret+b&n=100")
    assert status == 200
    assert "content-encoding" not in headers
    assert body == gz_text(b"a ****** b", 100)
    assert (framing, headers["content-length"]) == ("length", str(len(body)))


def test_a_streamed_gzip_body_is_redacted_and_sent_plain(upstream: ScriptedUpstream, tmp_path: Path) -> None:
    """A body hook on a large chunked gzip body (4 MiB decoded) sees it decoded, in pieces:
    every secret, wherever the pieces split it, is redacted; the client gets it plain and
    chunked."""
    lines = 4 * LIMIT // 20
    with _gateway(upstream, tmp_path, [Redact(b"SECRET-42", b"[gone]")]) as gw:
        status, headers, body, framing = _get(gw, f"/gz?text=xSECRET-42yz&n={lines}&chunked=1")
    assert status == 200
    assert "content-encoding" not in headers and framing == "chunked"
    assert body == gz_text(b"x[gone]yz", lines)


def test_a_decompression_bomb_known_in_full_is_over_the_limit(upstream: ScriptedUpstream, tmp_path: Path) -> None:
    """64 MB of zeros, about 64 KB compressed (under the 1 MiB limit): decoded, it is over the
    limit, so the route's decision (block) answers 502 without the gateway holding more
    than the limit, and the record says why."""
    whole = Whole()
    with _gateway(upstream, tmp_path, [whole]) as gw:
        status, headers, _, _ = _get(gw, f"/gz?text=0&n={64 * 1000 * 1000}&same=1")
        (record,) = [r for r in gw.access_records() if r["path"] == "/gz"]
    assert status == 502 and headers["content-type"] == "application/problem+json"
    assert record["decisions"] == [
        {"stage": "http.response_body", "action": "block",
         "reason": "response body over max_response_body_bytes once decoded"}
    ]


def test_a_streamed_decompression_bomb_is_cut(upstream: ScriptedUpstream, tmp_path: Path) -> None:
    """A chunked gzip body (its pieces 20 ms apart, so it streams) that expands more than 100
    times through a body hook: the stream is cut (the head is out), never decoded to the
    end. (Had it come whole with its head, it would be a body over the limit: 502.)"""
    target = f"/gz?text=0&n={64 * 1000 * 1000}&same=1&chunked=1&gap=20"
    gw = _gateway(upstream, tmp_path, [Redact(b"x", b"y")])
    with gw, RawConnection("127.0.0.1", gw.port, timeout=20) as conn:
        conn.send(f"GET {target} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
        raw = conn.read_until_close()
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert not raw.endswith(b"\r\n0\r\n\r\n")
    assert len(raw) < 8 * LIMIT


@pytest.mark.parametrize("stage", ["whole", "chunk"])
def test_invalid_gzip_known_in_full_is_a_502(upstream: ScriptedUpstream, tmp_path: Path, stage: str) -> None:
    """A gzip body cut short, known in full, is the upstream's failure: 502 problem+json,
    for a whole-body stage as for a body hook; the connection serves the next request."""
    stages: list[Any] = [Whole()] if stage == "whole" else [Redact(b"x", b"y")]
    with _gateway(upstream, tmp_path, stages) as gw, RawConnection("127.0.0.1", gw.port) as conn:
        conn.send(b"GET /gz?text=hello&n=50&cut=1 HTTP/1.1\r\nHost: api.test\r\n\r\n")
        resp = conn.read_response()
        assert resp.status == 502 and resp.header("content-type") == "application/problem+json"
        conn.send(b"GET /gz?text=hello&n=50 HTTP/1.1\r\nHost: api.test\r\n\r\n")
        assert conn.read_response().status == 200


@pytest.mark.parametrize(("over_limit", "status"), [("block", 502), ("pass", 200)])
def test_a_coding_not_decoded_cannot_be_inspected(
    upstream: ScriptedUpstream, tmp_path: Path, over_limit: str, status: int
) -> None:
    """A body in a coding Bastion does not decode (announced as br) gets the route's decision:
    502 when blocking; when passing, the bytes as they came, the stage never shown them,
    the record saying uninspected."""
    whole = Whole()
    with _gateway(upstream, tmp_path, [whole], over_limit) as gw:
        got, headers, body, _ = _get(gw, "/gz?text=hello&n=10&enc=br")
        (record,) = [r for r in gw.access_records() if r["path"] == "/gz"]
    assert got == status
    action = "block" if over_limit == "block" else "uninspected"
    assert record["decisions"] == [
        {"stage": "http.response_body", "action": action, "reason": "response body in content coding 'br'"}
    ]
    if over_limit == "pass":
        assert headers["content-encoding"] == "br" and gzip.decompress(body) == gz_text(b"hello", 10)
        assert whole.seen == []
