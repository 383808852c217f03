"""The runner: one route's stages, in order, with shadow mode and failure modes applied.

Nothing here touches a socket. The proxy calls :meth:`Chain.head` once the request head
is parsed (before reading any of the body), :meth:`Chain.request` after that (with the body
buffered, if :attr:`Chain.needs_request_body`), and :meth:`Chain.response` once the
upstream's response head (or body) is in.

Both run synchronously as long as the stages answer synchronously. When a stage returns
an awaitable, they return a :class:`Pending` instead, and the proxy finishes the chain
with :meth:`Chain.finish_request` / :meth:`Chain.finish_response` in a task. Only there is
a stage timed: each awaited hook gets its stage's ``timeout``, and one that has not answered
by then is a :class:`DeadlineExceeded` (a :class:`DependencyUnavailable`) under the stage's
``failure_mode``. Synchronous hooks pay nothing for it.

A hook's answer is checked for its type where it is used: anything but ``None``, a
:class:`Block` or (on the request side) a :class:`Response` is a stage failure like an
exception, so the proxy only ever sees the types it handles.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bastion.errors import DeadlineExceeded, DependencyUnavailable, block_response, problem_response
from bastion.pipeline.stage import HeadStage, RequestStage, ResponseBodyStage, ResponseStage, Stage
from bastion.types import Block, Decision, Exchange, Response

log = logging.getLogger("bastion.pipeline")

#: Called as ``on_stage_error(stage_name)`` whenever a stage fails (raises, misses its
#: deadline or answers with a wrong type); the proxy counts it.
ErrorCounter = Callable[[str], None]


#: A hook as the chain holds it: its answer typed ``object``, checked where it is used (a
#: declared union would be checked by compiled code at the call, outside the stage's
#: failure handling's wording).
_Hook = Callable[[Exchange], object]


def _ignore(_: str) -> None:
    return None


class Pending:
    """A chain stopped at a stage that returned an awaitable; finish it with ``finish_*``."""

    __slots__ = ("awaitable", "index")

    def __init__(self, index: int, awaitable: Awaitable[Any]) -> None:
        self.index = index
        self.awaitable = awaitable


class Chain:
    """The stages of one route, split by phase, built once at config load."""

    __slots__ = (
        "_head_hooks",
        "_request_hooks",
        "_response_hooks",
        "_uninspected_hooks",
        "answers_preflight",
        "body_stages",
        "field_stages",
        "forwards_heads",
        "head_stages",
        "needs_request_body",
        "needs_response_body",
        "on_stage_error",
        "passes_responses",
        "request_stages",
        "response_stages",
        "sees_response_body",
        "uninspected_stages",
    )

    def __init__(self, stages: Sequence[Stage], on_stage_error: ErrorCounter = _ignore) -> None:
        self.head_stages: tuple[HeadStage, ...] = tuple(s for s in stages if isinstance(s, HeadStage))
        self.request_stages: tuple[RequestStage, ...] = tuple(s for s in stages if isinstance(s, RequestStage))
        # Response hooks run in reverse order, like unwinding a stack.
        self.response_stages: tuple[ResponseStage, ...] = tuple(
            s for s in reversed(stages) if isinstance(s, ResponseStage)
        )
        #: The response hooks that run on a body passed uninspected (over the route's
        #: ``max_response_body_bytes`` with ``response_body_over_limit: pass``): those that
        #: never needed it. A stage that needs the whole body is not shown a part of it.
        self.uninspected_stages: tuple[ResponseStage, ...] = tuple(
            s for s in self.response_stages if not s.needs_response_body
        )
        #: Response body hooks, in reverse order too (each sees what the one before made).
        self.body_stages: tuple[ResponseBodyStage, ...] = tuple(
            s for s in reversed(stages) if isinstance(s, ResponseBodyStage)
        )
        #: No stage looks at responses: the proxy forwards them as the bytes they came in.
        self.passes_responses = not self.response_stages and not self.body_stages
        #: The response hooks that only add header fields (``adds_fields_only``).
        self.field_stages: tuple[ResponseStage, ...] = tuple(s for s in self.response_stages if s.adds_fields_only)
        #: No stage looks at responses but to add fields: the proxy may forward the
        #: upstream's head as bytes, with :meth:`fields` after it.
        self.forwards_heads = len(self.field_stages) == len(self.response_stages) and not self.body_stages
        self.needs_request_body = any(s.needs_request_body for s in self.request_stages)
        self.needs_response_body = any(s.needs_response_body for s in self.response_stages)
        #: Some stage sees the response body (whole or in pieces): it is decoded for them.
        self.sees_response_body = self.needs_response_body or bool(self.body_stages)
        #: A stage answers CORS preflights on this route (see ``Stage.answers_preflight``).
        self.answers_preflight = any(s.answers_preflight for s in self.head_stages)
        self.on_stage_error = on_stage_error
        # Each stage's hook, taken once here (index for index with the stage tuples): calling
        # it skips looking the method up on the (interpreted) stage on every request, and a
        # stage may hand a compiled object's method (``HeadStage.head_hook``).
        self._head_hooks: tuple[_Hook, ...] = tuple(s.head_hook() for s in self.head_stages)
        self._request_hooks: tuple[_Hook, ...] = tuple(s.request_hook() for s in self.request_stages)
        self._response_hooks: tuple[_Hook, ...] = tuple(s.response_hook() for s in self.response_stages)
        self._uninspected_hooks: tuple[_Hook, ...] = tuple(s.response_hook() for s in self.uninspected_stages)

    # -- request-head phase -----------------------------------------------------------
    def head(self, exchange: Exchange, start: int = 0) -> Response | Pending | None:
        """Run head hooks from ``start``: the response to send instead of reading the body
        and proxying, if any."""
        stages = self.head_stages
        hooks = self._head_hooks
        for i in range(start, len(stages)):
            try:
                # Typed object: compiled code would otherwise check the declared union here and
                # raise TypeError outside the stage's failure handling when a hook answers wrong.
                outcome: object = hooks[i](exchange)
            except Exception as exc:
                failed = self._failed(stages[i], exchange, exc)
                if failed is not None:
                    return failed
                continue
            if outcome is None:
                continue
            if inspect.isawaitable(outcome):
                return Pending(i, outcome)
            final = self._request_outcome(stages[i], exchange, outcome, "on_request_head")
            if final is not None:
                return final
        return None

    async def finish_head(self, exchange: Exchange, pending: Pending) -> Response | None:
        """Await the pending head hook, then run the rest of the head hooks."""
        return await self._finish_before_upstream(exchange, pending, True)

    # -- request phase ----------------------------------------------------------------
    def request(self, exchange: Exchange, start: int = 0) -> Response | Pending | None:
        """Run request hooks from ``start``: the response to send instead of proxying, if any."""
        stages = self.request_stages
        hooks = self._request_hooks
        for i in range(start, len(stages)):
            try:
                outcome: object = hooks[i](exchange)  # unchecked here: see head()
            except Exception as exc:
                failed = self._failed(stages[i], exchange, exc)
                if failed is not None:
                    return failed
                continue
            if outcome is None:
                continue
            if inspect.isawaitable(outcome):
                return Pending(i, outcome)
            final = self._request_outcome(stages[i], exchange, outcome)
            if final is not None:
                return final
        return None

    async def finish_request(self, exchange: Exchange, pending: Pending) -> Response | None:
        """Await the pending stage, then run the rest of the request hooks."""
        return await self._finish_before_upstream(exchange, pending, False)

    async def _finish_before_upstream(self, exchange: Exchange, pending: Pending, head: bool) -> Response | None:
        """The awaiting side of :meth:`head` (``head``) or :meth:`request`: one loop for both
        phases, since only the stage list and the hook's name differ. (The synchronous loops
        stay apart: they call a different method each, on every request.)"""
        hook = "on_request_head" if head else "on_request"
        while True:
            stage: Stage = self.head_stages[pending.index] if head else self.request_stages[pending.index]
            try:
                outcome = await _settle(stage, pending.awaitable)
            except Exception as exc:
                failed = self._failed(stage, exchange, exc)
                if failed is not None:
                    return failed
            else:
                if outcome is not None:
                    final = self._request_outcome(stage, exchange, outcome, hook)
                    if final is not None:
                        return final
            result = self.head(exchange, pending.index + 1) if head else self.request(exchange, pending.index + 1)
            if not isinstance(result, Pending):
                return result
            pending = result

    def _request_outcome(
        self, stage: Stage, exchange: Exchange, outcome: object, hook: str = "on_request"
    ) -> Response | None:
        if isinstance(outcome, Block):
            if self._record_block(stage, exchange, outcome):
                return block_response(outcome, exchange.request_id)
            return None
        if isinstance(outcome, Response):
            # A stage answered the request itself (it is not a block: no shadow mode).
            exchange.decisions.append(Decision(stage.name, "answer", "answered", outcome.status))
            return outcome
        return self._failed(stage, exchange, _wrong_type(stage, hook, outcome, "None, a Block or a Response"))

    # -- response phase ---------------------------------------------------------------
    def response(self, exchange: Exchange, start: int = 0, inspected: bool = True) -> Pending | None:
        """Run response hooks from ``start`` on ``exchange.response`` (a block replaces it);
        only :attr:`uninspected_stages` when the body was passed ``inspected=False``."""
        stages = self.response_stages if inspected else self.uninspected_stages
        hooks = self._response_hooks if inspected else self._uninspected_hooks
        for i in range(start, len(stages)):
            try:
                outcome: object = hooks[i](exchange)  # unchecked here: see head()
            except Exception as exc:
                failed = self._failed(stages[i], exchange, exc)
                if failed is not None:
                    exchange.response = failed
                    return None
                continue
            if outcome is None:
                continue
            if inspect.isawaitable(outcome):
                return Pending(i, outcome)
            if self._response_outcome(stages[i], exchange, outcome):
                return None
        return None

    def fields(self, exchange: Exchange) -> bytes | None:
        """The header lines the :attr:`field_stages` add to this response, in their order;
        ``None`` when one of them raised: the caller then runs the response hooks instead
        (:meth:`response`), which count and handle that failure as any hook's."""
        stages = self.field_stages
        try:
            if len(stages) == 1:
                return stages[0].response_fields(exchange)
            return b"".join([stage.response_fields(exchange) for stage in stages])
        except Exception:
            return None

    async def finish_response(self, exchange: Exchange, pending: Pending, inspected: bool = True) -> None:
        """Await the pending stage, then run the rest of the response hooks."""
        stages = self.response_stages if inspected else self.uninspected_stages
        while True:
            stage = stages[pending.index]
            try:
                outcome = await _settle(stage, pending.awaitable)
            except Exception as exc:
                failed = self._failed(stage, exchange, exc)
                if failed is not None:
                    exchange.response = failed
                    return
            else:
                if outcome is not None and self._response_outcome(stage, exchange, outcome):
                    return
            result = self.response(exchange, pending.index + 1, inspected)
            if result is None:
                return
            pending = result

    def _response_outcome(self, stage: Stage, exchange: Exchange, outcome: object) -> bool:
        """Apply a response hook's block; tell whether the chain stops here."""
        if not isinstance(outcome, Block):
            failed = self._failed(stage, exchange, _wrong_type(stage, "on_response", outcome, "None or a Block"))
            if failed is not None:
                exchange.response = failed
                return True
            return False
        if self._record_block(stage, exchange, outcome):
            exchange.response = block_response(outcome, exchange.request_id)
            return True
        return False

    # -- response body ------------------------------------------------------------------
    def body_filter(self, exchange: Exchange) -> BodyFilter | None:
        """What runs the body hooks over one response's body, if the route has any."""
        return BodyFilter(self, exchange) if self.body_stages else None

    # -- both -------------------------------------------------------------------------
    async def run_request(self, exchange: Exchange) -> Response | None:
        """The whole request phase, awaiting stages as needed."""
        result = self.request(exchange)
        if isinstance(result, Pending):
            return await self.finish_request(exchange, result)
        return result

    async def run_response(self, exchange: Exchange) -> None:
        """The whole response phase, awaiting stages as needed."""
        pending = self.response(exchange)
        if pending is not None:
            await self.finish_response(exchange, pending)

    def _record_block(self, stage: Stage, exchange: Exchange, block: Block) -> bool:
        """Log the decision; tell whether it is enforced."""
        enforced = stage.config.enforce
        exchange.decisions.append(Decision(stage.name, "block" if enforced else "monitor", block.reason, block.status))
        if enforced:
            exchange.blocked_by = stage.name
        return enforced

    def _failed(self, stage: Stage, exchange: Exchange, exc: Exception) -> Response | None:
        """A stage failed: count it, log it, and deny unless the stage fails open."""
        self.on_stage_error(stage.name)
        unavailable = isinstance(exc, DependencyUnavailable)
        log.error(
            "stage %s failed on request %s: %s",
            stage.name,
            exchange.request_id,
            exc,
            # The exception itself, not sys.exc_info(): a wrong answer type was never raised.
            exc_info=None if unavailable else exc,
        )
        exchange.decisions.append(Decision(stage.name, "error", type(exc).__name__))
        if stage.config.failure_mode == "open":
            return None
        exchange.blocked_by = stage.name
        status = 503 if unavailable else 500
        detail = "A security check could not be completed; the request was refused."
        return problem_response(status, detail, exchange.request_id)


class BodyFilter:
    """The body hooks of one response: each piece of the body goes through every hook in
    turn (reverse registry order), and what comes out may go to the client.

    Each hook's last :attr:`ResponseBodyStage.overlap` bytes of output are held back and put
    in front of its next piece, so memory is bounded by the pieces (the upstream's reads)
    plus the overlaps, whatever the body's size. A hook in shadow mode (``enforce: false``)
    sees the bytes and changes none of them.
    """

    __slots__ = ("_chain", "_dropped", "_exchange", "_held", "refusal")

    def __init__(self, chain: Chain, exchange: Exchange) -> None:
        self._chain = chain
        self._exchange = exchange
        count = len(chain.body_stages)
        self._held: list[bytes] = [b""] * count
        #: Stages that failed open: they see no more of this body.
        self._dropped: list[bool] = [False] * count
        #: Set when a stage failed closed: the answer for a body not sent yet (500).
        self.refusal: Response | None = None

    def feed(self, chunk: bytes, final: bool) -> bytes | None:
        """What may be sent of the body now that ``chunk`` came (all that is left when
        ``final``); ``None`` once a stage failed closed: nothing more may be sent."""
        if self.refusal is not None:
            return None
        data = chunk
        stages = self._chain.body_stages
        held = self._held
        for i in range(len(stages)):
            if self._dropped[i]:
                continue
            stage = stages[i]
            if held[i]:
                data = held[i] + data
                held[i] = b""
            if not data and not final:
                continue
            try:
                out: object = stage.on_response_chunk(self._exchange, data, final)
            except Exception as exc:
                if self._fail(i, stage, exc):
                    return None
                continue  # failed open: its piece (and what it held) goes on unchanged
            if not isinstance(out, bytes):
                wrong = _wrong_type(stage, "on_response_chunk", out, "bytes")
                if self._fail(i, stage, wrong):
                    return None
                continue
            if stage.config.enforce:
                data = out
            keep = stage.overlap
            if keep and not final:
                if len(data) <= keep:
                    held[i], data = data, b""
                else:
                    held[i], data = data[-keep:], data[:-keep]
        return data

    def _fail(self, i: int, stage: ResponseBodyStage, exc: Exception) -> bool:
        """A body hook failed: tell whether the body must stop here (failing closed)."""
        refusal = self._chain._failed(stage, self._exchange, exc)
        if refusal is not None:
            self.refusal = refusal
            return True
        self._dropped[i] = True
        return False


class _Deadline:
    """A hook's deadline on the task awaiting it: cancels the task when it passes.

    What ``asyncio.timeout`` does, without its state machine, weak references and context
    manager protocol, all interpreted: those were about 28,000 instructions per awaited
    hook, as much as a rate limit's whole Redis command (docs/benchmarks.md). As there, the
    task's cancel count tells this deadline's cancellation from anyone else's.
    """

    __slots__ = ("cancelling", "expired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        #: Cancellations already requested when the hook started (not this deadline's).
        self.cancelling = task.cancelling()
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        self.task.cancel()

    def was_this(self) -> bool:
        """Whether the cancellation the task got is this deadline's alone (taken back)."""
        return self.expired and self.task.uncancel() <= self.cancelling


async def _settle(stage: Stage, awaitable: Awaitable[Any]) -> object:
    """Await a hook's answer for at most the stage's ``timeout``.

    A late hook is cancelled and its stage counts as failed, even when it swallows the
    cancellation and answers anyway: an answer after the deadline is not used. A
    ``TimeoutError`` the hook raises itself (its own client timing out) stays what it is,
    and a cancellation from elsewhere (the client gone, the drain ended) goes on as one.
    """
    task = asyncio.current_task()
    if task is None:  # not in a task (never so in the proxy): nothing to cancel, no deadline
        return await awaitable
    deadline = _Deadline(task)
    timer = asyncio.get_running_loop().call_later(stage.config.timeout, deadline.expire)
    try:
        outcome: object = await awaitable
    except BaseException as exc:
        timer.cancel()
        ours = deadline.was_this()  # taken back whatever the hook raised, as asyncio.timeout does
        if (ours and isinstance(exc, asyncio.CancelledError)) or (deadline.expired and isinstance(exc, TimeoutError)):
            raise _late(stage) from None
        raise
    timer.cancel()
    if deadline.was_this():
        raise _late(stage)
    return outcome


def _late(stage: Stage) -> DeadlineExceeded:
    return DeadlineExceeded(f"stage {stage.name} gave no answer within its timeout of {stage.config.timeout:g} s")


def _wrong_type(stage: Stage, hook: str, outcome: object, expected: str) -> TypeError:
    """The failure a hook's answer of the wrong type is (a bug in the stage, never the client's)."""
    if inspect.iscoroutine(outcome):
        outcome.close()  # never awaited, and never will be: no "never awaited" warning later
    return TypeError(f"stage {stage.name}: {hook} gave {type(outcome).__name__}; it must give {expected}")
