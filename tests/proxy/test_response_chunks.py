"""Response body hooks (``ResponseBodyStage.on_response_chunk``) through the real proxy.

A body hook sees the upstream's body in bounded pieces as it streams, with its declared
``overlap`` held back and shown again, so a pattern split across pieces is still found and
redacted; a changed body goes to the client re-framed (chunked, no ``Content-Length``), or
with its new length when it was known in full; memory stays flat whatever the body's size.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bastion.pipeline.stage import ResponseBodyStage, StageConfig
from bastion.testing import RawConnection
from bastion.types import Exchange

from .conftest import SHARED_UPSTREAM, gateway_config
from .inprocess import InProcessGateway
from .scripted import ScriptedUpstream, pattern

MB = 1024 * 1024


class Redact(ResponseBodyStage):
    """Replaces every ``secret`` with ``mark``; holds back enough to see one split in two."""

    def __init__(self, secret: bytes, mark: bytes, config: StageConfig | None = None) -> None:
        super().__init__("redact", config or StageConfig())
        self.secret = secret
        self.mark = mark
        self.overlap = len(secret) - 1
        #: The largest piece the hook was given.
        self.largest = 0

    def on_response_chunk(self, exchange: Exchange, chunk: bytes, final: bool) -> bytes:
        self.largest = max(self.largest, len(chunk))
        return chunk.replace(self.secret, self.mark)


class NoOp(ResponseBodyStage):
    """Changes nothing; counts what it was shown."""

    overlap = 64

    def __init__(self) -> None:
        super().__init__("noop", StageConfig())
        self.seen = 0

    def on_response_chunk(self, exchange: Exchange, chunk: bytes, final: bool) -> bytes:
        self.seen += len(chunk)
        return chunk


class FailsAfter(ResponseBodyStage):
    """Raises once it has been shown ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__("fails", StageConfig())
        self.limit = limit
        self.seen = 0

    def on_response_chunk(self, exchange: Exchange, chunk: bytes, final: bool) -> bytes:
        self.seen += len(chunk)
        if self.seen > self.limit:
            raise RuntimeError("the redaction rules are broken")
        return chunk


@pytest.fixture
def config(upstream: ScriptedUpstream) -> dict[str, object]:
    return gateway_config(upstream.url, upstream_options=SHARED_UPSTREAM)


def _get(gw: InProcessGateway, target: str) -> tuple[int, dict[str, str], bytes, str]:
    """One GET on a fresh connection: status, headers (lower-cased names), body, framing."""
    with RawConnection("127.0.0.1", gw.port, timeout=20) as conn:
        conn.send(f"GET {target} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
        resp = conn.read_response()
    return resp.status, {k.lower(): v for k, v in resp.headers}, resp.body, resp.framing


def test_a_secret_split_across_chunks_is_redacted(config: dict[str, object], tmp_path: Path) -> None:
    """A secret the upstream sends in three separate chunks is still found (the overlap
    shows its start again with the rest) and replaced; the changed body goes chunked."""
    redact = Redact(b"SECRET-TOKEN", b"[redacted]")
    with InProcessGateway(config, tmp_path, [redact]) as gw:
        status, headers, body, framing = _get(gw, "/parts?p=aaa+SEC&p=RET-TO&p=KEN+bbb")
    assert status == 200
    assert body == b"aaa [redacted] bbb"
    assert framing == "chunked" and "content-length" not in headers


@pytest.mark.parametrize("path", ["/big", "/bigchunked"])
def test_a_large_body_is_redacted_at_every_boundary(config: dict[str, object], tmp_path: Path, path: str) -> None:
    """4 MiB of the 0..255 ramp, with Content-Length or chunked, redacting the four bytes
    around each wrap (fe ff 00 01, which also straddle the upstream's 64 KiB writes and the
    proxy's reads): the client gets exactly the redacted ramp, re-framed chunked, and the
    hook was never given more than a read's worth at once."""
    secret = b"\xfe\xff\x00\x01"
    redact = Redact(secret, b"<>")
    with InProcessGateway(config, tmp_path, [redact]) as gw:
        status, headers, body, framing = _get(gw, f"{path}?n={4 * MB}")
    assert status == 200
    assert body == pattern(4 * MB).replace(secret, b"<>")
    assert framing == "chunked" and "content-length" not in headers
    assert redact.largest <= 1 * MB


def test_a_body_known_in_full_gets_its_new_length(config: dict[str, object], tmp_path: Path) -> None:
    """A small body that came whole with its head is one final piece; the changed body goes
    with its own Content-Length."""
    with InProcessGateway(config, tmp_path, [Redact(b"world", b"there")]) as gw:
        status, headers, body, framing = _get(gw, "/head-test")
    assert (status, body, framing) == (200, b"hello there", "length")
    assert headers["content-length"] == "11"
    (tmp_path / "longer").mkdir()
    with InProcessGateway(config, tmp_path / "longer", [Redact(b"world", b"wide world")]) as gw:
        _, headers, body, _ = _get(gw, "/head-test")
    assert (body, headers["content-length"]) == (b"hello wide world", "16")


def test_shadow_mode_sees_the_body_and_changes_nothing(config: dict[str, object], tmp_path: Path) -> None:
    """A body hook with ``enforce: false`` is shown the body but its changes are not sent."""
    redact = Redact(b"SECRET", b"[x]", StageConfig(enforce=False))
    with InProcessGateway(config, tmp_path, [redact]) as gw:
        _, _, body, _ = _get(gw, "/parts?p=a+SEC&p=RET+b")
    assert body == b"a SECRET b"
    assert redact.largest > 0


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_memory_stays_flat_through_a_body_hook(config: dict[str, object], tmp_path: Path) -> None:
    """200 MB chunked through a no-op body hook (gateway, upstream and client all in this
    process): the process's RSS, sampled every few MB while the body streams, never grows by
    more than 48 MB over what it was after a first, small response -- the body is never
    held, only pieces and the overlap."""
    size = 200 * 1000 * 1000
    noop = NoOp()
    end = b"\r\n0\r\n\r\n"
    with InProcessGateway(config, tmp_path, [noop]) as gw:
        _get(gw, f"/bigchunked?n={MB}")  # warm up: pools, buffers, parsers
        baseline = peak = _rss_kib()
        with socket.create_connection(("127.0.0.1", gw.port), timeout=20) as sock:
            sock.sendall(f"GET /bigchunked?n={size} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
            received, tail, next_sample = 0, b"", 0
            while not tail.endswith(end):
                data = sock.recv(1 << 20)
                assert data, "the gateway closed the connection mid-body"
                received += len(data)
                tail = (tail + data)[-len(end):]
                if received >= next_sample:
                    peak = max(peak, _rss_kib())
                    next_sample += 4 * MB
    assert received > size
    assert noop.seen >= MB + size  # every byte, some of them twice (the overlap)
    assert peak - baseline < 48 * 1024, f"RSS grew by {(peak - baseline) // 1024} MiB"


def test_a_hook_failing_mid_stream_cuts_the_body(config: dict[str, object], tmp_path: Path) -> None:
    """A body hook that fails closed once the head is out cuts the connection (the body is
    not finished: never a complete-looking response with a part missing); the failure is
    in the record."""
    with InProcessGateway(config, tmp_path, [FailsAfter(MB)]) as gw:
        with RawConnection("127.0.0.1", gw.port, timeout=20) as conn:
            conn.send(f"GET /bigchunked?n={4 * MB} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
            raw = conn.read_until_close()
        records = gw.access_records()
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert not raw.endswith(b"\r\n0\r\n\r\n")
    assert len(raw) < 4 * MB
    (record,) = [r for r in records if r["path"] == "/bigchunked"]
    assert record["decisions"] == [{"stage": "fails", "action": "error", "reason": "RuntimeError"}]


def test_a_hook_failing_on_a_whole_body_is_a_500(config: dict[str, object], tmp_path: Path) -> None:
    """A body hook that fails closed on a body known in full (nothing sent yet) gets the
    stage failure's 500 problem+json, never the unfiltered body, on a connection that
    stays usable."""
    with InProcessGateway(config, tmp_path, [FailsAfter(0)]) as gw, RawConnection("127.0.0.1", gw.port) as conn:
        for _ in range(2):
            conn.send(b"GET /head-test HTTP/1.1\r\nHost: api.test\r\n\r\n")
            resp = conn.read_response()
            assert resp.status == 500
            assert resp.header("content-type") == "application/problem+json"
            assert b"hello" not in resp.body
