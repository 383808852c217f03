"""Stage failures through the real proxy: a hook that answers with a wrong type or misses its
deadline is a counted stage failure under its failure mode, answered with a problem document
on a connection that stays usable -- never an aborted connection.

The registry's stages never fail like this, so the gateway runs in this process (a real
listener on a free loopback port, its own event loop in a thread) with hand-made chains put
on its routes after the configuration is loaded.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Iterator
from pathlib import Path

import pytest
import uvloop
import yaml

from bastion.config import load_config
from bastion.pipeline import Chain, RequestStage, ResponseStage, StageConfig
from bastion.proxy.accesslog import AccessLog
from bastion.proxy.metrics import METRICS, CountMetrics
from bastion.proxy.record import RecordSinks
from bastion.proxy.runtime import Runtime
from bastion.proxy.server import GatewayServer
from bastion.proxy.worker import listen_socket
from bastion.testing import RawConnection, free_port
from bastion.types import Block, Exchange, Response

from .conftest import gateway_config
from .scripted import ScriptedUpstream


class WrongType(RequestStage):
    """Answers every request with a string, at once or through an awaitable."""

    def __init__(self, name: str, *, wait: bool) -> None:
        super().__init__(name, StageConfig())
        self.wait = wait

    def on_request(self, exchange: Exchange) -> Block | Response | Awaitable[Block | Response | None] | None:
        return self._later() if self.wait else "ok"  # type: ignore[return-value]

    async def _later(self) -> object:
        return "ok"


class WrongResponse(ResponseStage):
    """Answers every response with a Response, which a response hook may not give."""

    def on_response(self, exchange: Exchange) -> Block | Awaitable[Block | None] | None:
        return Response(200, [], b"replaced")  # type: ignore[return-value]


class NeverAnswers(RequestStage):
    """Waits for I/O that never completes (a dependency that hangs)."""

    def on_request(self, exchange: Exchange) -> Awaitable[Block | Response | None]:
        return self._wait()

    async def _wait(self) -> None:
        await asyncio.Event().wait()


#: Route path -> the stage its chain runs instead of the configured ones.
STAGES = {
    "/wrong-now": lambda: WrongType("wrong-now", wait=False),
    "/wrong-later": lambda: WrongType("wrong-later", wait=True),
    "/wrong-response": lambda: WrongResponse("wrong-response", StageConfig()),
    "/late": lambda: NeverAnswers("late", StageConfig(timeout=0.05)),
    "/late-open": lambda: NeverAnswers("late-open", StageConfig(timeout=0.05, failure_mode="open")),
}


@pytest.fixture(scope="module")
def gateway_port(upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """An in-process gateway whose routes run the stages of :data:`STAGES`."""
    folder: Path = tmp_path_factory.mktemp("stage-failures")
    config = gateway_config(upstream.url, routes=[{"path": p, "public": True} for p in STAGES])
    (folder / "bastion.yaml").write_text(yaml.safe_dump(config))
    runtime = Runtime(load_config(folder / "bastion.yaml"))
    for path, make in STAGES.items():
        match = runtime.router.match("", path, "GET")
        assert match is not None and not isinstance(match, list)
        route = match.route
        route.chain = Chain([make()], route.chain.on_stage_error)  # counted as the proxy counts
    loop = uvloop.new_event_loop()
    port = free_port()
    server = GatewayServer(runtime, RecordSinks([CountMetrics(), AccessLog(None)]))
    started = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        runtime.start()
        await server.start(listen_socket("127.0.0.1", port))
        started.set()
        await stop.wait()
        await server.drain(grace=1)
        await runtime.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def errors_of(stage: str) -> float:
    return METRICS.counters["bastion_stage_errors"].get((stage,), 0.0)


def get_twice(port: int, path: str) -> list[tuple[int, str | None, bytes]]:
    """GET ``path`` twice on one kept-alive connection: (status, content type, body) of each."""
    out = []
    with RawConnection("127.0.0.1", port) as conn:
        for _ in range(2):
            conn.send(f"GET {path} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
            resp = conn.read_response()
            out.append((resp.status, resp.header("content-type"), resp.body))
    return out


@pytest.mark.parametrize("path", ["/wrong-now", "/wrong-later", "/wrong-response"])
def test_wrong_answer_type_is_a_500_problem_on_a_live_connection(gateway_port: int, path: str) -> None:
    """A hook answering with a type the chain does not take (synchronously, through an
    awaitable, or a Response from a response hook) gets 500 problem+json, counted in
    bastion_stage_errors_total, and the connection serves the next request."""
    stage = path.lstrip("/")
    before = errors_of(stage)
    answers = get_twice(gateway_port, path)
    for status, content_type, body in answers:
        assert (status, content_type) == (500, "application/problem+json")
        assert b"ok" not in body and b"replaced" not in body and b"TypeError" not in body
    assert errors_of(stage) == before + 2


def test_missed_deadline_is_503_and_fail_open_forwards(gateway_port: int, upstream: ScriptedUpstream) -> None:
    """A hook that never answers is cut at its stage's timeout: 503 when the stage fails
    closed (the upstream never sees the request), forwarded when it fails open; both counted."""
    closed, opened = errors_of("late"), errors_of("late-open")
    token = uuid.uuid4().hex
    late = get_twice(gateway_port, f"/late?t={token}")
    assert [a[:2] for a in late] == [(503, "application/problem+json")] * 2
    assert not upstream.saw(token)
    assert [a[0] for a in get_twice(gateway_port, f"/late-open?t={token}")] == [200, 200]
    assert len(upstream.records(token)) == 2
    assert errors_of("late") == closed + 2 and errors_of("late-open") == opened + 2
