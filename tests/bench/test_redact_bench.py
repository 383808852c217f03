"""bench/redact.py's pure parts: its bodies and the chain runs it times (no timing here)."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bastion.pipeline.chain import Chain
from bastion.stages.redact import RedactConfig, RedactStage
from bastion.types import Exchange, Request, Response
from redact import json_body, pieces, runner


def test_the_bodies_are_json_of_the_asked_size_with_cards() -> None:
    """A body is valid JSON of about the size asked for, with a card in one record in fifty."""
    body = json_body(100 * 1024)
    records = orjson.loads(body)
    assert 100 * 1024 <= len(body) < 101 * 1024
    assert sum(1 for r in records if "card" in r) == len(records) // 50


def test_the_timed_runs_redact_every_card_of_a_chunked_body() -> None:
    """The redact run over 64 KiB reads of a 1 MB body masks every card (so what is timed is
    the real work), and the baseline passes every byte."""
    body = json_body(1_000_000)
    parts = pieces(body)
    assert len(parts) > 10
    assert runner([], parts)() == len(body)
    stage = RedactStage(RedactConfig())
    assert runner([stage], parts)() == len(body)  # masking keeps the length
    chain = Chain([stage])
    exchange = Exchange(Request("GET", "/", "/", "", []), "t")
    exchange.response = Response(200, [], None)
    chain.response(exchange)
    body_filter = chain.body_filter(exchange)
    assert body_filter is not None
    out = b"".join(body_filter.feed(p, i == len(parts) - 1) or b"" for i, p in enumerate(parts))
    assert b"4111 1111 1111 1111" not in out
    assert out.count(b"**** **** **** 1111") == body.count(b"4111 1111 1111 1111") > 0
