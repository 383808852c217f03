"""Response bodies a stage inspects whole (``needs_response_body``), through the real proxy.

A route with such a stage buffers at most ``max_response_body_bytes`` of the upstream's
body; a larger body gets the route's named decision before the response head is sent:
``block`` (the default) answers 502 problem+json on a connection that stays usable, ``pass``
forwards the body intact with only the hooks that do not need it, and the record says
``uninspected``. Never a cut connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.pipeline.stage import ResponseStage, StageConfig
from bastion.testing import RawConnection
from bastion.types import Block, Exchange

from .conftest import SHARED_UPSTREAM, gateway_config
from .inprocess import InProcessGateway
from .scripted import ScriptedUpstream, pattern

LIMIT = 256 * 1024


class WholeBody(ResponseStage):
    """Needs the whole body: notes the size of each body it was shown."""

    needs_response_body = True

    def __init__(self) -> None:
        super().__init__("whole", StageConfig())
        self.seen: list[int] = []

    def on_response(self, exchange: Exchange) -> Block | None:
        response = exchange.response
        assert response is not None and response.body is not None
        self.seen.append(len(response.body))
        return None


class HeadOnly(ResponseStage):
    """Looks at the response head only: marks every response it was shown."""

    def __init__(self) -> None:
        super().__init__("head-only", StageConfig())

    def on_response(self, exchange: Exchange) -> Block | None:
        response = exchange.response
        assert response is not None
        response.headers.append(("x-head-only", "seen"))
        return None


Setup = tuple[InProcessGateway, WholeBody]


def _gateway(upstream: ScriptedUpstream, folder: Path, over_limit: str | None) -> Iterator[Setup]:
    limits: dict[str, Any] = {"max_response_body_bytes": LIMIT}
    if over_limit is not None:
        limits["response_body_over_limit"] = over_limit
    config = gateway_config(upstream.url, upstream_options=SHARED_UPSTREAM, listen={"limits": limits})
    whole = WholeBody()
    # Registry order: head-only first, so its response hook runs last (reverse order).
    with InProcessGateway(config, folder, [HeadOnly(), whole]) as gw:
        yield gw, whole


@pytest.fixture
def blocking(upstream: ScriptedUpstream, tmp_path: Path) -> Iterator[Setup]:
    """The default decision (``block``)."""
    yield from _gateway(upstream, tmp_path, None)


@pytest.fixture
def passing(upstream: ScriptedUpstream, tmp_path: Path) -> Iterator[Setup]:
    yield from _gateway(upstream, tmp_path, "pass")


def _decisions(gw: InProcessGateway, request_id: str | None) -> object:
    (line,) = [r for r in gw.access_records() if r["request_id"] == request_id]
    return line.get("decisions")


@pytest.mark.parametrize("path", ["/big", "/bigchunked"])
def test_body_within_the_limit_is_shown_whole(blocking: Setup, path: str) -> None:
    """A body up to the limit (Content-Length or chunked) is buffered and shown whole to the
    stage that needs it, then reaches the client intact."""
    gw, whole = blocking
    with RawConnection("127.0.0.1", gw.port) as conn:
        conn.send(f"GET {path}?n={LIMIT} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
        resp = conn.read_response()
    assert resp.status == 200
    assert resp.body == pattern(LIMIT)
    assert resp.header("x-head-only") == "seen"
    assert whole.seen == [LIMIT]


@pytest.mark.parametrize("path", ["/big", "/bigchunked"])
@pytest.mark.parametrize("size", [LIMIT + 1, 4 * LIMIT])
def test_body_over_the_limit_is_blocked_by_default(blocking: Setup, path: str, size: int) -> None:
    """By default a body over the limit is answered with 502 problem+json; the response hooks
    run on that answer (as on any stage's answer), so no stage is shown a part of the
    upstream's body; the record names the decision, and the client's connection serves its
    next request."""
    gw, whole = blocking
    with RawConnection("127.0.0.1", gw.port) as conn:
        conn.send(f"GET {path}?n={size} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
        resp = conn.read_response()
        assert resp.status == 502
        assert resp.header("content-type") == "application/problem+json"
        assert b"larger than this route may inspect" in resp.body
        assert resp.header("x-head-only") == "seen"
        conn.send(b"GET /echo HTTP/1.1\r\nHost: api.test\r\n\r\n")
        echo = conn.read_response()
        assert echo.status == 200
    assert whole.seen == [len(resp.body), len(echo.body)]
    decisions = _decisions(gw, resp.header("x-request-id"))
    assert decisions == [
        {"stage": "http.response_body", "action": "block", "reason": "response body over max_response_body_bytes"}
    ]


@pytest.mark.parametrize("path", ["/big", "/bigchunked"])
@pytest.mark.parametrize("size", [LIMIT + 1, 4 * LIMIT])
def test_body_over_the_limit_passes_uninspected_when_configured(passing: Setup, path: str, size: int) -> None:
    """With ``response_body_over_limit: pass`` a body over the limit reaches the client intact
    (every byte, in order, including the part already buffered), only the head-only hook
    runs, and the record says the body went uninspected."""
    gw, whole = passing
    with RawConnection("127.0.0.1", gw.port) as conn:
        conn.send(f"GET {path}?n={size} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.body == pattern(size)
        assert resp.header("x-head-only") == "seen"
        conn.send(b"GET /echo HTTP/1.1\r\nHost: api.test\r\n\r\n")
        assert conn.read_response().status == 200
    assert len(whole.seen) == 1 and whole.seen[0] < LIMIT  # only the echo was inspected
    decisions = _decisions(gw, resp.header("x-request-id"))
    assert decisions == [
        {"stage": "http.response_body", "action": "uninspected", "reason": "response body over max_response_body_bytes"}
    ]


def test_body_in_with_its_head_over_the_limit_is_blocked(upstream: ScriptedUpstream, tmp_path: Path) -> None:
    """A small body that arrived whole with its head (the path that never waits) is held to
    the limit too: 64 bytes allowed, the echo's JSON of several hundred refused with 502."""
    limits = {"max_response_body_bytes": 64}
    config = gateway_config(upstream.url, upstream_options=SHARED_UPSTREAM, listen={"limits": limits})
    whole = WholeBody()
    with InProcessGateway(config, tmp_path, [whole]) as gw, RawConnection("127.0.0.1", gw.port) as conn:
        for _ in range(2):  # the second on a pooled upstream connection
            conn.send(b"GET /echo HTTP/1.1\r\nHost: api.test\r\n\r\n")
            resp = conn.read_response()
            assert resp.status == 502
            assert b"larger than this route may inspect" in resp.body
    assert whole.seen == [len(resp.body)] * 2
