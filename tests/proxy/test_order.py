"""The registry's documented order through the real proxy: head hooks, then request
hooks, top to bottom; response hooks, then body hooks on each piece of a streamed body,
bottom to top; the record last (the chain alone: ``tests/pipeline/test_order.py``)."""

from __future__ import annotations

from pathlib import Path

from bastion.testing import RawConnection
from bastion.types import ExchangeRecord

from ..pipeline.test_order import Answers, Every, Transcript
from .conftest import SHARED_UPSTREAM, gateway_config
from .inprocess import InProcessGateway
from .scripted import ScriptedUpstream


def test_the_proxy_runs_each_side_in_its_documented_order(upstream: ScriptedUpstream, tmp_path: Path) -> None:
    """Through the real proxy on a streamed (chunked) response: the same order, each piece
    of the body through the body hooks bottom to top, and the record handed to the sinks
    last, after the final piece."""
    transcript: Transcript = []

    class Sink:
        name = "transcript"

        def __call__(self, record: ExchangeRecord) -> None:
            transcript.append(("record", str(record.status)))

    stages = [Every("first", transcript), Answers("middle", transcript), Every("last", transcript)]
    config = gateway_config(upstream.url, upstream_options=SHARED_UPSTREAM)
    with InProcessGateway(config, tmp_path, stages, sinks=[Sink()]) as gw:
        with RawConnection("127.0.0.1", gw.port) as conn:
            conn.send(b"GET /chunked HTTP/1.1\r\nHost: api.test\r\n\r\n")
            resp = conn.read_response()
        gw.access_records()  # the record is written once the exchange ends: wait for it
    assert resp.body == b"hello chunked world"
    prefix = [
        ("head", "first"), ("head", "last"),
        ("request", "first"), ("request", "last"),
        ("response", "last"), ("response", "middle"), ("response", "first"),
    ]
    assert transcript[: len(prefix)] == prefix
    pieces = transcript[len(prefix) : -3]
    assert pieces and pieces == [("chunk", "last"), ("chunk", "first")] * (len(pieces) // 2)
    assert transcript[-3:] == [("final", "last"), ("final", "first"), ("record", "200")]
