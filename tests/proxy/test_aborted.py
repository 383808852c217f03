"""Malformed and aborted requests leave the worker's log clean: a client that breaks the
protocol or goes away mid-request is logged in the access log, never as a worker error."""

from __future__ import annotations

import contextlib
import socket

from bastion.testing import GatewayProcess, RawConnection

from .conftest import SHARED_UPSTREAM, gateway_config
from .scripted import ScriptedUpstream
from .util import build


def _chunked_then(gw: GatewayProcess, target: str, tail: bytes, *, close: bool) -> None:
    """Start a chunked upload to ``target``, then send ``tail`` (often broken) and either
    close at once or read whatever answer comes."""
    with RawConnection("127.0.0.1", gw.port, timeout=5) as conn:
        conn.send(build("POST", target, [("Transfer-Encoding", "chunked")]) + b"5\r\nhello\r\n")
        conn.send(tail)
        if close:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return
        with contextlib.suppress(TimeoutError, ConnectionError):
            conn.read_until_close()


def test_aborted_and_malformed_uploads_leave_no_worker_errors() -> None:
    """Uploads that break off (a bad chunk size, a reset mid-body, a half-close mid-body)
    while the upstream request is already on its way, in front of an upstream that also
    drops connections without answering: the worker's stderr holds no "Future exception
    was never retrieved" and no traceback, only what the gateway logs on purpose."""
    with ScriptedUpstream() as upstream:
        config = gateway_config(upstream.url, upstream_options=SHARED_UPSTREAM)
        with GatewayProcess(config) as gw:
            for i in range(20):
                for path in (f"/drop?{i}", f"/echo?{i}", f"/drop-early?{i}"):
                    _chunked_then(gw, path, b"zz\r\n", close=False)  # an invalid chunk size
                    _chunked_then(gw, path, b"5\r\nwor", close=True)  # reset mid-body
                    with RawConnection("127.0.0.1", gw.port, timeout=5) as conn:
                        conn.send(build("POST", path, [("Content-Length", "100")]) + b"x" * 10)
                        conn.shutdown_write()  # half-close: the body is cut short
                        with contextlib.suppress(TimeoutError, ConnectionError):
                            conn.read_until_close()
            # A last plain request proves the worker is alive and flushes nothing pending.
            with RawConnection("127.0.0.1", gw.port, timeout=5) as conn:
                conn.send(build("GET", "/echo?last", [("Connection", "close")]))
                assert conn.read_response().status == 200
            gw.stop()
            stderr = gw.stderr_text()
    assert "never retrieved" not in stderr, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
