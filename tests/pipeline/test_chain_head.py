"""The chain's request-head phase (``Chain.head``), as a transcript, with no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from bastion.pipeline import Chain, HeadStage, Pending, RequestStage, StageConfig
from bastion.types import Block, Exchange, Request, Response

FORBIDDEN = Block(403, "Forbidden", "Not for you.", reason="test.forbidden")


class Both(HeadStage, RequestStage):
    """Writes each hook it gets into ``log``; its head hook refuses, raises or waits as told."""

    def __init__(
        self,
        name: str,
        log: list[str],
        *,
        block: Block | None = None,
        raise_: Exception | None = None,
        wait: bool = False,
        config: StageConfig | None = None,
    ) -> None:
        super().__init__(name, config or StageConfig())
        self.log, self.block, self.raise_, self.wait = log, block, raise_, wait

    def on_request_head(self, exchange: Exchange) -> Block | Awaitable[Block | None] | None:
        self.log.append(f">> {self.name}.on_request_head body={exchange.request.body!r}")
        if self.raise_ is not None:
            raise self.raise_
        if self.wait:
            return self._later()
        return self.block

    async def _later(self) -> Block | None:
        await asyncio.sleep(0)
        self.log.append(f".. {self.name} awaited")
        return self.block

    def on_request(self, exchange: Exchange) -> None:
        self.log.append(f">> {self.name}.on_request")


def exchange() -> Exchange:
    return Exchange(Request("POST", "/x", "/x", "", [("host", "api.test")]), "req-1")


def test_head_hooks_run_in_order_and_apart_from_request_hooks() -> None:
    """Head hooks run in registry order, on a request without its body; request hooks are
    not run by ``head`` (the proxy runs them after the body)."""
    log: list[str] = []
    chain = Chain([Both("a", log), Both("b", log)])
    assert [s.name for s in chain.head_stages] == ["a", "b"]
    assert chain.head(exchange()) is None
    assert log == [">> a.on_request_head body=None", ">> b.on_request_head body=None"]


def test_head_block_stops_the_chain_and_is_recorded() -> None:
    """A head hook's block is the answer: later head hooks do not run, the decision is logged."""
    log: list[str] = []
    ex = exchange()
    answer = Chain([Both("a", log, block=FORBIDDEN), Both("b", log)]).head(ex)
    assert isinstance(answer, Response) and answer.status == 403
    assert log == [">> a.on_request_head body=None"]
    assert ex.blocked_by == "a" and [d.action for d in ex.decisions] == ["block"]


def test_head_block_in_shadow_mode_is_logged_not_enforced() -> None:
    """``enforce: false`` applies to head hooks too: decided and logged, never blocked."""
    log: list[str] = []
    ex = exchange()
    shadow = StageConfig(enforce=False)
    assert Chain([Both("a", log, block=FORBIDDEN, config=shadow), Both("b", log)]).head(ex) is None
    assert len(log) == 2 and not ex.blocked_by and [d.action for d in ex.decisions] == ["monitor"]


def test_head_hook_failure_follows_the_failure_mode() -> None:
    """A head hook that raises denies (500) unless its stage fails open."""
    log: list[str] = []
    closed = Chain([Both("a", log, raise_=RuntimeError("boom"))]).head(exchange())
    assert isinstance(closed, Response) and closed.status == 500
    opened = Chain([Both("a", log, raise_=RuntimeError("boom"), config=StageConfig(failure_mode="open"))])
    assert opened.head(exchange()) is None


def test_awaiting_head_hook_pends_then_finishes() -> None:
    """A head hook returning an awaitable stops ``head`` at it (``Pending``);
    ``finish_head`` awaits it and runs the rest."""
    log: list[str] = []
    ex = exchange()
    chain = Chain([Both("a", log, wait=True), Both("b", log, block=FORBIDDEN)])
    pending = chain.head(ex)
    assert isinstance(pending, Pending)
    answer = asyncio.run(chain.finish_head(ex, pending))
    assert isinstance(answer, Response) and answer.status == 403
    assert log == [">> a.on_request_head body=None", ".. a awaited", ">> b.on_request_head body=None"]


class Stuck(HeadStage):
    """A head hook that waits far longer than its stage's timeout, or answers with ``answer``."""

    def __init__(self, config: StageConfig, answer: object = None, *, sleep: float = 5.0) -> None:
        super().__init__("stuck", config)
        self.answer, self.sleep = answer, sleep

    def on_request_head(self, exchange: Exchange) -> Awaitable[object]:
        return self._wait()

    async def _wait(self) -> object:
        await asyncio.sleep(self.sleep)
        return self.answer


def _finish(chain: Chain, ex: Exchange) -> Response | None:
    pending = chain.head(ex)
    assert isinstance(pending, Pending)
    return asyncio.run(chain.finish_head(ex, pending))


def test_late_head_hook_is_an_unavailable_dependency() -> None:
    """Head hooks get their stage's deadline like request hooks: a late one is a 503 (fail
    closed) and counted, or lets the request on under failure_mode: open."""
    errors: list[str] = []
    ex = exchange()
    resp = _finish(Chain([Stuck(StageConfig(timeout=0.01))], errors.append), ex)
    assert isinstance(resp, Response) and resp.status == 503
    assert errors == ["stuck"] and [d.reason for d in ex.decisions] == ["DeadlineExceeded"]
    opened = Chain([Stuck(StageConfig(timeout=0.01, failure_mode="open"))], errors.append)
    assert _finish(opened, exchange()) is None
    assert errors == ["stuck", "stuck"]


def test_head_hook_answering_a_wrong_type_is_a_stage_failure() -> None:
    """An awaited head hook that gives something else than None, a Block or a Response is the
    stage's failure (500, counted), named as on_request_head."""
    errors: list[str] = []
    ex = exchange()
    resp = _finish(Chain([Stuck(StageConfig(), answer=403, sleep=0)], errors.append), ex)
    assert isinstance(resp, Response) and resp.status == 500
    assert errors == ["stuck"] and [d.reason for d in ex.decisions] == ["TypeError"]
