"""After a reload, the replaced stages close when the requests that started on them end.

A worker runs in-process in front of a held upstream (a real socket server that answers a
request only when the test lets it), so a request can be kept in flight across a reload
for as long as the test needs, with no timing involved. The toy counting stage
(:mod:`tests.state.toy`) counts its ``close`` calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bastion.proxy import worker as worker_module
from bastion.proxy.worker import Worker
from bastion.testing import free_port

from .test_stateful_stage import identity, run, wait_until
from .toy import ToyLoader


class HeldUpstream:
    """An HTTP upstream on a free loopback port that answers each request (200, ``held``)
    only once :meth:`release` is called; :attr:`arrived` counts requests received."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.arrived = 0
        self._released = threading.Event()
        self._stopped = False
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def release(self) -> None:
        self._released.set()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.arrived += 1
            self._released.wait(30)
            with contextlib.suppress(OSError):
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n"
                             b"connection: close\r\n\r\nheld")

    def stop(self) -> None:
        self._stopped = True
        self._released.set()
        self.sock.close()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def held() -> Iterator[HeldUpstream]:
    server = HeldUpstream()
    try:
        yield server
    finally:
        server.stop()


def write_config(folder: Path, upstream_url: str) -> tuple[Path, int]:
    port = free_port()
    path = folder / "bastion.yaml"
    path.write_text(json.dumps({
        "listen": {"host": "127.0.0.1", "port": port},
        "access_log": {"enabled": False},
        "services": [{"name": "api", "upstream": upstream_url,
                      "routes": [{"path": "/", "prefix": True, "public": True}]}],
    }))
    return path, port


def test_replaced_stage_closes_when_its_last_request_ends(tmp_path: Path, held: HeldUpstream) -> None:
    """A reload while a request is held at the upstream: the replaced stage stays open
    while that request is in flight (it is answered 200 through it), and is closed once,
    right after the request ends -- with the 30 s maximum grace left as it is, so it is
    the request's end that closes it, not a timer."""
    assert worker_module.RELOAD_GRACE == 30.0
    path, port = write_config(tmp_path, held.url)
    loader = ToyLoader()
    worker = Worker(str(path), identity=identity(), load=loader)

    async def scenario() -> None:
        await worker.start()
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                slow = asyncio.ensure_future(client.get(f"http://127.0.0.1:{port}/slow"))
                await wait_until(lambda: held.arrived == 1, "the request reached the upstream")
                assert await worker.apply_reload() is True
                old, new = loader.stages
                assert (new.starts, new.closes) == (1, 0)
                await asyncio.sleep(0.2)  # time for a close that would come too early
                assert not slow.done()
                assert old.closes == 0, "the replaced stage was closed under a request in flight"
                held.release()
                answer = await slow
                assert (answer.status_code, answer.text) == (200, "held")
                await wait_until(lambda: old.closes == 1, "the replaced stage is closed after its request")
                assert new.closes == 0
        finally:
            await worker.stop()
        assert [(s.starts, s.closes) for s in loader.stages] == [(1, 1), (1, 1)]

    run(scenario)


def test_replaced_stage_without_requests_closes_at_once(tmp_path: Path, held: HeldUpstream) -> None:
    """A reload with nothing in flight closes the replaced stage at once (the worker does
    not wait out any grace), while the new one serves."""
    path, _ = write_config(tmp_path, held.url)
    loader = ToyLoader()
    worker = Worker(str(path), identity=identity(), load=loader)

    async def scenario() -> None:
        await worker.start()
        try:
            assert await worker.apply_reload() is True
            old, new = loader.stages
            await wait_until(lambda: old.closes == 1, "the idle replaced stage is closed")
            assert new.closes == 0
        finally:
            await worker.stop()

    run(scenario)


def test_a_stuck_request_does_not_keep_old_stages_past_the_grace(tmp_path: Path, held: HeldUpstream,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that never ends (the upstream holds it) keeps the replaced stage open at
    most RELOAD_GRACE: with the grace at 0.3 s the stage is closed while the request is
    still held."""
    monkeypatch.setattr(worker_module, "RELOAD_GRACE", 0.3)
    path, port = write_config(tmp_path, held.url)
    loader = ToyLoader()
    worker = Worker(str(path), identity=identity(), load=loader)

    async def scenario() -> None:
        await worker.start()
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                stuck = asyncio.ensure_future(client.get(f"http://127.0.0.1:{port}/stuck"))
                await wait_until(lambda: held.arrived == 1, "the request reached the upstream")
                assert await worker.apply_reload() is True
                old = loader.stages[0]
                await wait_until(lambda: old.closes == 1, "the replaced stage is closed after the grace")
                assert not stuck.done()
                held.release()
                await asyncio.gather(stuck, return_exceptions=True)
        finally:
            await worker.stop()

    run(scenario)
