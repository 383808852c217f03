"""Graceful shutdown (SIGTERM): what arrives on open connections during the drain is answered
with ``Connection: close``; what still runs when the drain period ends gets a 503, or is cut
if its response is already streaming, and the access log says which."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bastion.testing import GatewayProcess, RawConnection, RawResponse

PROBLEM = "application/problem+json"


class StallingUpstream:
    """An upstream on loopback (asyncio, in a thread): ``/fast...`` answers at once and keeps
    the connection; ``/slow...`` never answers; ``/stream...`` sends a head announcing 1000
    bytes and 10 of them, then stalls. It counts the requests it has read per path prefix."""

    def __init__(self) -> None:
        self.port = 0
        self.seen: dict[str, int] = {}
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> StallingUpstream:
        self._thread.start()
        assert self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    def wait_seen(self, prefix: str, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.seen.get(prefix, 0) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the upstream saw {self.seen} requests, not {count} {prefix}")
            time.sleep(0.01)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await self._serve(reader, writer)
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            prefix = next((p for p in ("/fast", "/slow", "/stream") if path.startswith(p)), "other")
            self.seen[prefix] = self.seen.get(prefix, 0) + 1
            if prefix == "/slow":
                await reader.read()  # until the gateway gives up on it
                return
            if prefix == "/stream":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"x" * 10)
                await writer.drain()
                await reader.read()
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok")
            await writer.drain()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()


@pytest.fixture
def upstream() -> Iterator[StallingUpstream]:
    with StallingUpstream() as server:
        yield server


def _config(upstream: StallingUpstream, drain: float) -> dict[str, Any]:
    return {
        "listen": {"timeouts": {"drain": drain}},
        "access_log": {"path": "access.log"},
        "services": [
            {
                "name": "s",
                "upstream": {"targets": [upstream.url], "retries": 0},
                "routes": [{"path": "/", "prefix": True, "public": True}],  # the drain is tested, not auth
            }
        ],
    }


def _request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: gw.test\r\n\r\n".encode()


def _wait_until_not_accepting(port: int, timeout: float = 10.0) -> None:
    """Until connecting is refused: the worker closed its listener, the drain has begun."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            probe = socket.create_connection(("127.0.0.1", port), timeout=1)
        except ConnectionRefusedError:
            return
        probe.close()
        time.sleep(0.01)
    raise AssertionError("the gateway still accepts connections")


def _assert_closing(resp: RawResponse, status: int) -> None:
    assert resp.status == status, (resp.status, resp.body)
    assert resp.header("connection") == "close"


def test_drain_answers_requests_on_open_connections(upstream: StallingUpstream) -> None:
    """After SIGTERM the gateway stops accepting connections, but a request sent on an idle
    keep-alive connection right then is answered (200, ``Connection: close``) and the
    connection closed after it; a request whose head was partly received when the drain
    began is not idle: it is answered too, even after the idle connections' grace."""
    with GatewayProcess(_config(upstream, drain=20), workers=1) as gw:
        idle = [RawConnection("127.0.0.1", gw.port) for _ in range(3)]
        partial = RawConnection("127.0.0.1", gw.port)
        try:
            for conn in idle:
                conn.send(_request("/fast"))
                first = conn.read_response()
                assert first.status == 200 and first.header("connection") is None
            partial.send(b"GET /fast/partial HTTP/1.1\r\nHost: gw.test\r\n")
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)
            _wait_until_not_accepting(gw.port)
            for conn in idle:
                conn.send(_request("/fast/during-drain"))
                _assert_closing(conn.read_response(), 200)
                assert conn.is_closed_by_peer(wait=5)
            time.sleep(1.5)  # longer than an idle connection is kept once the drain began
            partial.send(b"\r\n")
            _assert_closing(partial.read_response(), 200)
            assert partial.is_closed_by_peer(wait=5)
            assert gw.proc.wait(15) == 0
        finally:
            for conn in (*idle, partial):
                conn.close()
        statuses = [r["status"] for r in gw.access_log_records()]
        assert statuses == [200] * 7
        assert "Traceback" not in gw.stderr_text()


def test_requests_running_when_the_drain_ends_get_503_or_are_cut(upstream: StallingUpstream) -> None:
    """Requests still waiting for their upstream when the drain period (1 s here) ends get
    503 problem+json with ``Connection: close``, on both request paths (a pooled upstream
    connection's callbacks, and a task opening a new one), and are logged as 503
    ``shutdown.drain_timeout``; a response already streaming is cut and logged with its
    status and ``shutdown.response_cut``; none is logged as 499 (client closed)."""
    with GatewayProcess(_config(upstream, drain=1), workers=1) as gw:
        conns = [RawConnection("127.0.0.1", gw.port, timeout=15) for _ in range(4)]
        warm, pooled, fresh, streaming = conns
        try:
            # One quick exchange leaves an idle upstream connection in the pool: the next
            # request takes it (the callback path); the one after opens another (a task).
            warm.send(_request("/fast"))
            assert warm.read_response().status == 200
            pooled.send(_request("/slow/pooled"))
            upstream.wait_seen("/slow", 1)
            fresh.send(_request("/slow/fresh"))
            streaming.send(_request("/stream"))
            upstream.wait_seen("/slow", 2)
            upstream.wait_seen("/stream", 1)
            head = b""
            while b"\r\n\r\n" not in head:
                head += streaming.read_some(4096, timeout=10)
            assert head.startswith(b"HTTP/1.1 200 ")
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)
            for conn in (pooled, fresh):
                resp = conn.read_response()
                _assert_closing(resp, 503)
                assert resp.header("content-type") == PROBLEM
                assert resp.json()["status"] == 503
                assert conn.is_closed_by_peer(wait=5)
            rest = streaming.read_until_close()
            assert len(head.split(b"\r\n\r\n", 1)[1] + rest) < 1000  # cut short
            assert gw.proc.wait(15) == 0
        finally:
            for conn in conns:
                conn.close()
        records = {r["path"]: r for r in gw.access_log_records()}
        assert records["/fast"]["status"] == 200
        for path in ("/slow/pooled", "/slow/fresh"):
            assert records[path]["status"] == 503, records[path]
            assert records[path]["reason"] == "shutdown.drain_timeout"
        assert records["/stream"]["status"] == 200
        assert records["/stream"]["reason"] == "shutdown.response_cut"
        assert len(records) == 4
        assert "Traceback" not in gw.stderr_text()
