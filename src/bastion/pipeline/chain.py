"""The runner: one route's stages, in order, with shadow mode and failure modes applied.

Nothing here touches a socket. The proxy calls :meth:`Chain.run_request` once the request
is parsed (and its body buffered, if :attr:`Chain.needs_request_body`), and
:meth:`Chain.run_response` once the upstream's response head (or body) is in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from bastion.errors import DependencyUnavailable, block_response, problem_response
from bastion.pipeline.stage import RequestStage, ResponseStage, Stage
from bastion.types import Block, Decision, Exchange, Response

log = logging.getLogger("bastion.pipeline")

#: Called as ``on_stage_error(stage_name)`` whenever a stage raises; the proxy counts it.
ErrorCounter = Callable[[str], None]


def _ignore(_: str) -> None:
    return None


class Chain:
    """The stages of one route, split by phase, built once at config load."""

    __slots__ = (
        "needs_request_body",
        "needs_response_body",
        "on_stage_error",
        "request_stages",
        "response_stages",
    )

    def __init__(self, stages: Sequence[Stage], on_stage_error: ErrorCounter = _ignore) -> None:
        self.request_stages: tuple[RequestStage, ...] = tuple(s for s in stages if isinstance(s, RequestStage))
        # Response hooks run in reverse order, like unwinding a stack.
        self.response_stages: tuple[ResponseStage, ...] = tuple(
            s for s in reversed(stages) if isinstance(s, ResponseStage)
        )
        self.needs_request_body = any(s.needs_request_body for s in self.request_stages)
        self.needs_response_body = any(s.needs_response_body for s in self.response_stages)
        self.on_stage_error = on_stage_error

    async def run_request(self, exchange: Exchange) -> Response | None:
        """Run the request hooks; return the response to send instead of proxying, if any."""
        for stage in self.request_stages:
            try:
                outcome = await stage.on_request(exchange)
            except Exception as exc:
                failed = self._failed(stage, exchange, exc)
                if failed is not None:
                    return failed
                continue
            if outcome is None:
                continue
            if isinstance(outcome, Block):
                if self._record_block(stage, exchange, outcome):
                    return block_response(outcome, exchange.request_id)
                continue
            # A stage answered the request itself (it is not a block: no shadow mode).
            exchange.decisions.append(Decision(stage.name, "answer", "answered", outcome.status))
            return outcome
        return None

    async def run_response(self, exchange: Exchange) -> None:
        """Run the response hooks on ``exchange.response``; a block replaces the response."""
        for stage in self.response_stages:
            try:
                outcome = await stage.on_response(exchange)
            except Exception as exc:
                failed = self._failed(stage, exchange, exc)
                if failed is not None:
                    exchange.response = failed
                    return
                continue
            if outcome is not None and self._record_block(stage, exchange, outcome):
                exchange.response = block_response(outcome, exchange.request_id)
                return

    def _record_block(self, stage: Stage, exchange: Exchange, block: Block) -> bool:
        """Log the decision; tell whether it is enforced."""
        enforced = stage.config.enforce
        exchange.decisions.append(Decision(stage.name, "block" if enforced else "monitor", block.reason, block.status))
        if enforced:
            exchange.blocked_by = stage.name
        return enforced

    def _failed(self, stage: Stage, exchange: Exchange, exc: Exception) -> Response | None:
        """A stage raised: count it, log it, and deny unless the stage fails open."""
        self.on_stage_error(stage.name)
        unavailable = isinstance(exc, DependencyUnavailable)
        log.error(
            "stage %s failed on request %s: %s",
            stage.name,
            exchange.request_id,
            exc,
            exc_info=not unavailable,
        )
        exchange.decisions.append(Decision(stage.name, "error", type(exc).__name__))
        if stage.config.failure_mode == "open":
            return None
        exchange.blocked_by = stage.name
        status = 503 if unavailable else 500
        detail = "A security check could not be completed; the request was refused."
        return problem_response(status, detail, exchange.request_id)


def build_chain(stages: Sequence[Stage], on_stage_error: ErrorCounter = _ignore) -> Chain:
    """A chain over ``stages`` (already in registry order)."""
    return Chain(stages, on_stage_error)
