"""A toy stateful stage, for the tests only: a request counter per client address.

It is not in the registry (nothing ships it); :class:`ToyLoader` adds it to every route of
a loaded configuration, and tests hand that loader to an in-process
:class:`~bastion.proxy.worker.Worker` (its ``load`` argument), which then starts, serves,
reloads and closes it like any stage.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import replace
from typing import Literal

from bastion.config import LoadedConfig, load_config
from bastion.errors import DependencyUnavailable
from bastion.pipeline.stage import RequestOutcome, RequestStage, StageConfig
from bastion.services import Services
from bastion.types import Block, Exchange


class CountingStage(RequestStage):
    """Counts each client's requests in the state backend; refuses past ``limit`` with 429."""

    uses_state = True

    def __init__(self, config: StageConfig, limit: int) -> None:
        super().__init__("counter", config)
        self.limit = limit
        self.services: Services | None = None
        self.starts = 0
        self.closes = 0

    async def start(self, services: Services) -> None:
        self.starts += 1
        self.services = services

    async def close(self) -> None:
        self.closes += 1

    def on_request(self, exchange: Exchange) -> RequestOutcome | Awaitable[RequestOutcome]:
        return self._count(exchange.request.client_ip)

    async def _count(self, client: str) -> RequestOutcome:
        if self.services is None:
            raise RuntimeError("counter stage used before start")
        seen = await self.services.state.incr(f"counter:{client}", ttl=3600)
        if seen > self.limit:
            return Block(429, "Too Many Requests", "Request limit reached.", "counter.exceeded")
        return None


class BrokenStartStage(RequestStage):
    """A stage whose dependency is down when the worker starts it."""

    def __init__(self) -> None:
        super().__init__("broken", StageConfig())

    async def start(self, services: Services) -> None:
        raise DependencyUnavailable("the key server at https://keys.invalid did not answer")

    def on_request(self, exchange: Exchange) -> RequestOutcome:
        return None


class ToyLoader:
    """``load_config`` plus a :class:`CountingStage` at the end of every route's stages.

    Every stage it builds is kept in :attr:`stages` (in load order), so a test can see
    which were started and closed, and how often.
    """

    def __init__(self, limit: int = 1000, failure_mode: Literal["closed", "open"] = "closed") -> None:
        self.limit = limit
        self.failure_mode: Literal["closed", "open"] = failure_mode
        self.broken_start = False
        self.stages: list[CountingStage] = []

    def __call__(self, path: str) -> LoadedConfig:
        loaded = load_config(path)
        routes = []
        for route in loaded.routes:
            stage = CountingStage(StageConfig(failure_mode=self.failure_mode), self.limit)
            self.stages.append(stage)
            extra = (stage, BrokenStartStage()) if self.broken_start else (stage,)
            routes.append(replace(route, built=(*route.built, *extra)))
        return replace(loaded, routes=tuple(routes))
