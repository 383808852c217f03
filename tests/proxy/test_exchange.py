"""One request path (``proxy/exchange.py``): steps run with plain calls until one has to
wait, and only then in a task.

Measured on the gateway's own event loop (an in-process gateway whose task factory counts):
an ordinary request (complete, no stage waiting, an idle pooled upstream connection) costs
no task at all; a request whose stage returns an awaitable costs exactly one, in which the
rest of its steps run.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bastion.pipeline.stage import HeadStage, RequestStage, StageConfig
from bastion.testing import RawConnection
from bastion.types import Block, Exchange

from .conftest import SHARED_UPSTREAM, gateway_config
from .inprocess import InProcessGateway
from .scripted import ScriptedUpstream

REQUESTS = 10


class Waits(RequestStage):
    """A request hook that answers through an awaitable, like a stage doing I/O."""

    def __init__(self) -> None:
        super().__init__("waits", StageConfig())

    def on_request(self, exchange: Exchange) -> Awaitable[Block | None]:
        return self._later()

    async def _later(self) -> Block | None:
        await asyncio.sleep(0)
        return None


class Passes(HeadStage):
    """A head hook that lets everything through, with a plain call."""

    def __init__(self) -> None:
        super().__init__("passes", StageConfig())

    def on_request_head(self, exchange: Exchange) -> None:
        return None


@pytest.fixture
def config(upstream: ScriptedUpstream) -> dict[str, object]:
    return gateway_config(upstream.url, upstream_options=SHARED_UPSTREAM)


def _tasks_for_requests(gw: InProcessGateway, token: str) -> int:
    """Send one request to fill the upstream pool, then ``REQUESTS`` more on the same
    connection, each answered 200; return the tasks created for the latter."""
    with RawConnection("127.0.0.1", gw.port) as conn:
        conn.send(f"GET /{token}/warm HTTP/1.1\r\nHost: gw.test\r\n\r\n".encode())
        assert conn.read_response().status == 200
        before = gw.tasks_created
        for i in range(REQUESTS):
            conn.send(f"GET /{token}/{i} HTTP/1.1\r\nHost: gw.test\r\n\r\n".encode())
            assert conn.read_response().status == 200
        return gw.tasks_created - before


@pytest.mark.parametrize("stages", [list, lambda: [Passes()]], ids=["no stage", "head stage"])
def test_ordinary_requests_create_no_task(
    config: dict[str, object], tmp_path: Path, stages: Callable[[], list[object]]
) -> None:
    """With no stage, or with a head stage answering at once, a complete request on an idle
    pooled upstream connection is answered with plain calls: not one task per request."""
    with InProcessGateway(config, tmp_path, stages()) as gw:
        assert _tasks_for_requests(gw, uuid.uuid4().hex) == 0


def test_waiting_stage_costs_one_task_per_request(config: dict[str, object], tmp_path: Path) -> None:
    """A request hook returning an awaitable moves the rest of the steps (forwarding,
    response, record) into one task: exactly one per request, not one per step."""
    with InProcessGateway(config, tmp_path, [Waits()]) as gw:
        assert _tasks_for_requests(gw, uuid.uuid4().hex) == REQUESTS
