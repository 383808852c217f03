"""On the memory backend the stage decides at once: no awaitable for the chain to time."""

from __future__ import annotations

import asyncio
import inspect
import os

from bastion.pipeline.stage import RouteInfo
from bastion.sensitive.evidence import TrustedText
from bastion.services import Clock, Services, WorkerIdentity
from bastion.stages.ratelimit import RateLimitConfig, RateLimitStage
from bastion.state.memory import MemoryBackend
from bastion.types import Block, Exchange, Request

ROUTE = RouteInfo("r", "api", "/", frozenset({"GET"}), True)


class Frozen(Clock):
    def monotonic(self) -> float:
        return 500.0


def test_the_memory_backend_answers_without_an_awaitable() -> None:
    """2 per minute by IP on the memory backend: the head hook returns ``None`` twice and a
    429 ``Block`` the third time, never an awaitable, and the same counts as through Redis's
    script (``r=1``, then ``r=0``)."""
    clock = Frozen()
    services = Services(MemoryBackend(clock.monotonic), WorkerIdentity("t", 0, 1, os.getpid()), clock)
    stage = RateLimitStage.from_config(RateLimitConfig.model_validate({"limit": 2, "window": "1m", "by": "ip"}), ROUTE)
    assert stage is not None
    asyncio.run(stage.start(services))
    outcomes = []
    for i in range(3):
        exchange = Exchange(Request("GET", "/", "/", "", [], client_ip="10.0.0.1"), f"r{i}")
        outcome = stage.on_request_head(exchange)
        assert not inspect.isawaitable(outcome)
        outcomes.append((outcome, exchange.facts.get("ratelimit")))
    assert outcomes[0] == (None, '"ip-2-per-60s";r=1;t=30')
    assert outcomes[1] == (None, '"ip-2-per-60s";r=0;t=60')
    # Its own numbers: marked so that the record's evidence redactor does not search them.
    assert all(isinstance(fact, TrustedText) for _, fact in outcomes[:2])
    refused = outcomes[2][0]
    assert isinstance(refused, Block) and refused.status == 429
