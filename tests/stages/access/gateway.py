"""A real gateway (in this process, on real sockets) whose routes see a principal, and an
upstream that creates objects.

No authentication method exists here, so a small test-only head stage, put first in every
route's chain, signs the request in from ``X-Test-User`` / ``X-Test-Roles`` /
``X-Test-Ip-Allow`` headers: what the auth stage does once a credential is verified. The
routes' own 401 (nothing here verifies their schemes) is lifted for the same reason. Every
other stage is the one the configuration builds, in registry order.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import Awaitable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import uvloop

from bastion.config import load_config
from bastion.pipeline.chain import Chain
from bastion.pipeline.stage import HeadStage, StageConfig
from bastion.proxy.accesslog import AccessLog
from bastion.proxy.metrics import CountMetrics
from bastion.proxy.record import RecordSinks
from bastion.proxy.runtime import Runtime
from bastion.proxy.server import GatewayServer
from bastion.services import Services, WorkerIdentity
from bastion.stages.access import LEDGER_KEY, MemoryOwnership, OwnershipLedger
from bastion.stages.auth import AuthStage
from bastion.state.memory import MemoryBackend
from bastion.types import Exchange, Principal


class SignIn(HeadStage):
    """Test only: the principal the ``X-Test-*`` headers describe (none without X-Test-User)."""

    def __init__(self) -> None:
        super().__init__("signin", StageConfig())

    def on_request_head(self, exchange: Exchange) -> None:
        request = exchange.request
        name = request.header("x-test-user")
        if name is None:
            return
        roles = frozenset(r for r in (request.header("x-test-roles") or "").split(",") if r)
        allow = tuple(ip_network(n) for n in (request.header("x-test-ip-allow") or "").split(",") if n)
        exchange.principal = Principal(f"id-{name}", name, "test", frozenset(), roles, {"sub": name}, allow)


class Shop:
    """The upstream: ``POST /books`` creates a book (201, its id in the body and Location);
    anything else is echoed as JSON. It notes every request it gets."""

    def __init__(self) -> None:
        seen = self.seen = []  # type: list[tuple[str, str]]
        #: The X-Test-Mark of every request received (each test request carries a fresh one).
        marks = self.marks = set()  # type: set[str]

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                seen.append((self.command, self.path))
                marks.add(self.headers.get("x-test-mark") or "")
                status, headers = 200, {"content-type": "application/json"}
                if self.command == "POST" and self.path == "/books":
                    book = uuid.uuid4().hex
                    status, doc = 201, {"id": book}
                    headers["location"] = f"/books/{book}"
                else:
                    doc = {"method": self.command, "path": self.path, "body": body.decode("latin-1")}
                out = json.dumps(doc).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Shop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class AccessGateway:
    """The gateway of ``config`` on ``host`` (``127.0.0.1`` or ``::1``), every route signed in
    by :class:`SignIn`; learned ownership kept in :attr:`ownership` (the store's stand-in)."""

    def __init__(self, config: dict[str, Any], folder: Path, host: str = "127.0.0.1") -> None:
        path = folder / "bastion.yaml"
        # SignIn stands in for the auth stage: its API key verifier (on by default, and
        # needing a store these services do not have) is not wanted.
        policies = dict(config.get("policies", {}))
        policies["auth"] = {**policies.get("auth", {}), "api_keys": {"enabled": False}}
        config = {**config, "policies": policies, "access_log": {"path": str(folder / "access.log")}}
        path.write_text(json.dumps(config))
        self.access_path = folder / "access.log"
        self.runtime = Runtime(load_config(path))
        for rt in _routes(self.runtime):
            rt.auth_refusal = None
            rt.chain = Chain([SignIn(), *(s for s in rt.resolved.built if not isinstance(s, AuthStage))])
        self.ownership = MemoryOwnership()
        #: The X-Test-Mark of the last request a test sent.
        self.last_mark = ""
        self.host = host
        self.loop = uvloop.new_event_loop()
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> AccessGateway:
        self.thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def run(self, coro: Awaitable[Any]) -> Any:
        async def wrapped() -> Any:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(10)

    async def _start(self) -> None:
        self.services = Services(MemoryBackend(), WorkerIdentity("test", 0, 1, 0))
        self.services.shared(LEDGER_KEY, lambda: OwnershipLedger(self.ownership))
        self.runtime.start()
        await self.runtime.start_stages(self.services)
        self.access = AccessLog(str(self.access_path))
        self.server = GatewayServer(self.runtime, RecordSinks([CountMetrics(), self.access]))
        await self.server.start(self.sock)

    async def _stop(self) -> None:
        await self.server.drain(0.5)
        self.access.close()
        await self.runtime.close()
        await self.services.close()

    def flush_ownership(self) -> None:
        """Wait until the learned records are written to :attr:`ownership`."""
        ledger = self.services.shared(LEDGER_KEY, lambda: OwnershipLedger(self.ownership))
        assert self.run(ledger.flush())

    def access_records(self) -> list[dict[str, Any]]:
        async def flush() -> None:
            self.access.flush()

        self.run(flush())
        return [json.loads(line) for line in self.access_path.read_text().splitlines()]


def _routes(runtime: Runtime) -> list[Any]:
    """Every route runtime of ``runtime`` (found through its routes' paths and methods)."""
    found: list[Any] = []
    for r in runtime.loaded.routes:
        path = "/".join("x" if seg.startswith("{") else seg for seg in r.path.split("/")) or "/"
        for method in r.methods:
            match = runtime.router.match(r.host or "", path, method, None)
            route = getattr(match, "route", None)
            if route is not None and all(route is not f for f in found):
                found.append(route)
    return found
