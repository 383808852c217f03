"""The sans-IO chain: stage order, short-circuits, shadow mode and failure modes, with no sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

import orjson
import pytest

from bastion.errors import DependencyUnavailable
from bastion.pipeline import Chain, Pending, RequestStage, ResponseStage, StageConfig
from bastion.types import Block, Exchange, Request, Response

Transcript = list[str]


class Recorder(RequestStage, ResponseStage):
    """A stage that writes what it sees into a shared transcript and does what it is told.

    With ``wait=True`` its hooks answer through an awaitable, like a stage doing I/O.
    """

    def __init__(
        self,
        name: str,
        log: Transcript,
        *,
        block: Block | None = None,
        answer: Response | None = None,
        raise_: Exception | None = None,
        config: StageConfig | None = None,
        wait: bool = False,
    ) -> None:
        super().__init__(name, config or StageConfig())
        self.log = log
        self.block = block
        self.answer = answer
        self.raise_ = raise_
        self.wait = wait

    def on_request(self, exchange: Exchange) -> Block | Response | Awaitable[Block | Response | None] | None:
        self.log.append(f">> {self.name}.on_request")
        if self.wait:
            return self._later_request()
        if self.raise_ is not None:
            raise self.raise_
        return self.block or self.answer

    async def _later_request(self) -> Block | Response | None:
        await asyncio.sleep(0)
        self.log.append(f".. {self.name} awaited")
        if self.raise_ is not None:
            raise self.raise_
        return self.block or self.answer

    def on_response(self, exchange: Exchange) -> Block | Awaitable[Block | None] | None:
        self.log.append(f"<< {self.name}.on_response")
        assert exchange.response is not None
        exchange.response.headers.append(("x-seen-by", self.name))
        if self.wait:
            return self._later_response()
        return None

    async def _later_response(self) -> Block | None:
        await asyncio.sleep(0)
        return None


def exchange() -> Exchange:
    return Exchange(Request("GET", "/x", "/x", "", [("host", "api.test")]), "req-1")


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


FORBIDDEN = Block(403, "Forbidden", "Not for you.", reason="test.forbidden")


def test_request_hooks_in_order_response_hooks_in_reverse() -> None:
    """Request hooks run in registry order, response hooks unwind in reverse."""
    log: Transcript = []
    chain = Chain([Recorder("a", log), Recorder("b", log), Recorder("c", log)])
    ex = exchange()
    assert run(chain.run_request(ex)) is None
    ex.response = Response(200, [], b"ok")
    run(chain.run_response(ex))
    assert log == [
        ">> a.on_request",
        ">> b.on_request",
        ">> c.on_request",
        "<< c.on_response",
        "<< b.on_response",
        "<< a.on_response",
    ]
    assert [v for k, v in ex.response.headers if k == "x-seen-by"] == ["c", "b", "a"]


def test_block_short_circuits_with_problem_json() -> None:
    """An enforced block stops the chain and becomes a problem+json response with the request ID."""
    log: Transcript = []
    chain = Chain([Recorder("a", log, block=FORBIDDEN), Recorder("b", log)])
    ex = exchange()
    resp = run(chain.run_request(ex))
    assert isinstance(resp, Response)
    assert log == [">> a.on_request"]
    assert resp.status == 403
    assert resp.header("content-type") == "application/problem+json"
    body = orjson.loads(resp.body or b"")
    assert body == {
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
        "detail": "Not for you.",
        "request_id": "req-1",
    }
    assert ex.blocked_by == "a"
    assert [(d.stage, d.action, d.reason) for d in ex.decisions] == [("a", "block", "test.forbidden")]


def test_shadow_mode_logs_but_does_not_block() -> None:
    """enforce: false records the decision as 'monitor' and lets the request continue."""
    log: Transcript = []
    chain = Chain([Recorder("a", log, block=FORBIDDEN, config=StageConfig(enforce=False)), Recorder("b", log)])
    ex = exchange()
    assert run(chain.run_request(ex)) is None
    assert log == [">> a.on_request", ">> b.on_request"]
    assert ex.blocked_by == ""
    assert [(d.stage, d.action) for d in ex.decisions] == [("a", "monitor")]


def test_stage_answer_is_not_subject_to_shadow_mode() -> None:
    """A stage that answers a request itself (not a block) is served even in shadow mode."""
    log: Transcript = []
    answer = Response(200, [("content-type", "application/json")], b"{}")
    chain = Chain([Recorder("a", log, answer=answer, config=StageConfig(enforce=False)), Recorder("b", log)])
    assert run(chain.run_request(exchange())) is answer
    assert log == [">> a.on_request"]


def test_failing_stage_fails_closed_by_default() -> None:
    """An exception in a stage denies the request with 500, is counted, and never reaches later stages."""
    log: Transcript = []
    errors: list[str] = []
    chain = Chain([Recorder("a", log, raise_=RuntimeError("boom")), Recorder("b", log)], errors.append)
    ex = exchange()
    resp = run(chain.run_request(ex))
    assert isinstance(resp, Response) and resp.status == 500
    assert b"boom" not in (resp.body or b"")  # no internals to the client
    assert errors == ["a"]
    assert log == [">> a.on_request"]
    assert [(d.stage, d.action, d.reason) for d in ex.decisions] == [("a", "error", "RuntimeError")]


def test_unavailable_dependency_is_503() -> None:
    """A stage that cannot reach its dependency (key store, Redis) denies with 503."""
    chain = Chain([Recorder("a", [], raise_=DependencyUnavailable("redis down"))])
    resp = run(chain.run_request(exchange()))
    assert isinstance(resp, Response) and resp.status == 503


def test_fail_open_is_explicit_and_still_counted() -> None:
    """failure_mode: open lets the request through after a stage failure, which is still counted."""
    log: Transcript = []
    errors: list[str] = []
    chain = Chain(
        [Recorder("a", log, raise_=RuntimeError("boom"), config=StageConfig(failure_mode="open")), Recorder("b", log)],
        errors.append,
    )
    assert run(chain.run_request(exchange())) is None
    assert log == [">> a.on_request", ">> b.on_request"]
    assert errors == ["a"]


def test_response_block_replaces_the_response() -> None:
    """A response hook's block replaces the upstream response (e.g. a leak stopped)."""

    class Leak(ResponseStage):
        def on_response(self, exchange: Exchange) -> Block | None:
            return Block(502, "Bad Gateway", "The response was withheld.", reason="test.leak")

    chain = Chain([Leak("leak", StageConfig())])
    ex = exchange()
    ex.response = Response(200, [], b"secret")
    run(chain.run_response(ex))
    assert ex.response.status == 502 and b"secret" not in (ex.response.body or b"")


def test_misspelt_hook_is_an_error_at_build_time() -> None:
    """A stage whose hook name is misspelt cannot be built (it would otherwise never run)."""

    class Typo(RequestStage):
        def on_requets(self, exchange: Exchange) -> None:  # misspelt on purpose
            return None

    with pytest.raises(TypeError):
        Typo("typo", StageConfig())  # type: ignore[abstract]


def test_body_needs_are_derived_from_stages() -> None:
    """The chain asks the proxy to buffer bodies only when one of its stages needs them."""

    class NeedsBody(Recorder):
        needs_request_body = True

    assert not Chain([Recorder("a", [])]).needs_request_body
    assert Chain([Recorder("a", []), NeedsBody("b", [])]).needs_request_body


def test_synchronous_stages_need_no_event_loop() -> None:
    """Stages that answer directly run to the end in one call: no awaitable, no event loop."""
    log: Transcript = []
    chain = Chain([Recorder("a", log), Recorder("b", log, block=FORBIDDEN)])
    resp = chain.request(exchange())
    assert isinstance(resp, Response) and resp.status == 403
    assert log == [">> a.on_request", ">> b.on_request"]


def test_awaiting_stage_pauses_and_the_chain_resumes_after_it() -> None:
    """A stage returning an awaitable stops the synchronous run; finishing it runs the later stages."""
    log: Transcript = []
    chain = Chain([Recorder("a", log), Recorder("b", log, wait=True), Recorder("c", log, block=FORBIDDEN)])
    ex = exchange()
    pending = chain.request(ex)
    assert isinstance(pending, Pending) and pending.index == 1
    assert log == [">> a.on_request", ">> b.on_request"]
    resp = run(chain.finish_request(ex, pending))
    assert isinstance(resp, Response) and resp.status == 403
    assert log == [">> a.on_request", ">> b.on_request", ".. b awaited", ">> c.on_request"]


def test_awaited_failure_follows_the_failure_mode() -> None:
    """An exception raised while awaiting a stage is a stage failure like any other (503 here)."""
    errors: list[str] = []
    chain = Chain([Recorder("a", [], wait=True, raise_=DependencyUnavailable("jwks down"))], errors.append)
    resp = run(chain.run_request(exchange()))
    assert isinstance(resp, Response) and resp.status == 503
    assert errors == ["a"]


def test_awaiting_response_stage() -> None:
    """Response hooks may await too; the rest of the response chain runs afterwards, in reverse order."""
    log: Transcript = []
    chain = Chain([Recorder("a", log), Recorder("b", log, wait=True), Recorder("c", log)])
    ex = exchange()
    ex.response = Response(200, [], b"ok")
    pending = chain.response(ex)
    assert isinstance(pending, Pending)
    run(chain.finish_response(ex, pending))
    assert log == ["<< c.on_response", "<< b.on_response", "<< a.on_response"]


class Slow(RequestStage, ResponseStage):
    """A stage doing I/O that never answers in time: its hooks wait for an event nobody sets.

    With ``stubborn=True`` it swallows the cancellation and answers anyway (a badly written
    client library); with ``raise_`` it fails by itself instead of waiting."""

    def __init__(self, name: str, log: Transcript, config: StageConfig, *, stubborn: bool = False,
                 raise_: Exception | None = None) -> None:
        super().__init__(name, config)
        self.log = log
        self.stubborn = stubborn
        self.raise_ = raise_

    def on_request(self, exchange: Exchange) -> Awaitable[Block | Response | None]:
        return self._wait()

    def on_response(self, exchange: Exchange) -> Awaitable[Block | None]:
        return self._wait()

    async def _wait(self) -> None:
        if self.raise_ is not None:
            raise self.raise_
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.log.append(f"xx {self.name} cancelled")
            if not self.stubborn:
                raise
        return None


#: A deadline that a hook waiting for nothing misses at once.
SHORT = StageConfig(timeout=0.01)


def test_stage_timeout_default_and_bounds() -> None:
    """Every stage has a timeout: 1 s by default, positive, at most a minute."""
    assert StageConfig().timeout == 1.0
    for bad in (0, -1, 61):
        with pytest.raises(ValueError):
            StageConfig(timeout=bad)


def test_late_stage_is_an_unavailable_dependency() -> None:
    """A hook that misses its stage's deadline is cancelled, counted, logged as
    DeadlineExceeded and denied with 503 (fail closed); later stages never run."""
    log: Transcript = []
    errors: list[str] = []
    chain = Chain([Slow("slow", log, SHORT), Recorder("b", log)], errors.append)
    ex = exchange()
    resp = run(chain.run_request(ex))
    assert isinstance(resp, Response) and resp.status == 503
    assert orjson.loads(resp.body or b"")["title"] == "Service Unavailable"
    assert log == ["xx slow cancelled"]
    assert errors == ["slow"]
    assert ex.blocked_by == "slow"
    assert [(d.stage, d.action, d.reason) for d in ex.decisions] == [("slow", "error", "DeadlineExceeded")]


def test_late_stage_failing_open_lets_the_request_through() -> None:
    """failure_mode: open applies to a missed deadline too: counted, then the chain goes on."""
    log: Transcript = []
    errors: list[str] = []
    config = StageConfig(timeout=0.01, failure_mode="open")
    chain = Chain([Slow("slow", log, config), Recorder("b", log)], errors.append)
    assert run(chain.run_request(exchange())) is None
    assert log == ["xx slow cancelled", ">> b.on_request"]
    assert errors == ["slow"]


def test_answer_after_the_deadline_is_not_used() -> None:
    """A hook that swallows its cancellation and answers late still counts as failed."""
    log: Transcript = []
    chain = Chain([Slow("slow", log, SHORT, stubborn=True)])
    resp = run(chain.run_request(exchange()))
    assert isinstance(resp, Response) and resp.status == 503
    assert log == ["xx slow cancelled"]


def test_stages_own_timeout_error_is_not_a_missed_deadline() -> None:
    """A TimeoutError the hook raises itself (before its deadline) is an ordinary failure: 500."""
    ex = exchange()
    resp = run(Chain([Slow("slow", [], StageConfig(), raise_=TimeoutError("client gave up"))]).run_request(ex))
    assert isinstance(resp, Response) and resp.status == 500
    assert [d.reason for d in ex.decisions] == ["TimeoutError"]


def test_a_cancellation_from_elsewhere_is_not_a_missed_deadline() -> None:
    """A hook cancelled before its deadline (the client went away, the drain ended) stops the
    chain as a cancellation: no 503, no stage failure counted, and the task's cancel count
    is left to whoever cancelled it; a later deadline in the same task still works."""
    errors: list[str] = []
    log: Transcript = []
    chain = Chain([Slow("slow", log, StageConfig(timeout=30))], errors.append)
    ex = exchange()

    async def scenario() -> tuple[bool, int, object]:
        inner = asyncio.get_running_loop().create_task(chain.run_request(ex))
        await asyncio.sleep(0.05)
        inner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await inner
        later = await Chain([Slow("slow2", [], SHORT)], errors.append).run_request(exchange())
        return inner.cancelled(), inner.cancelling(), later

    cancelled, cancelling, later = run(scenario())
    assert cancelled and cancelling == 1
    assert log == ["xx slow cancelled"]
    assert ex.decisions == []
    assert errors == ["slow2"]
    assert isinstance(later, Response) and later.status == 503


def test_late_response_hook_replaces_the_response_with_503() -> None:
    """On the response side a missed deadline replaces the upstream's response (fail closed)."""
    errors: list[str] = []
    chain = Chain([Recorder("a", []), Slow("slow", [], SHORT)], errors.append)
    ex = exchange()
    ex.response = Response(200, [], b"secret")
    run(chain.run_response(ex))
    assert ex.response.status == 503 and b"secret" not in (ex.response.body or b"")
    assert errors == ["slow"]


class Wrong(RequestStage, ResponseStage):
    """A stage whose hooks answer with ``answer`` (a wrong type), directly or through an awaitable."""

    def __init__(self, answer: object, config: StageConfig | None = None, *, wait: bool = False) -> None:
        super().__init__("wrong", config or StageConfig())
        self.answer = answer
        self.wait = wait

    def on_request(self, exchange: Exchange) -> Block | Response | Awaitable[Block | Response | None] | None:
        return self._later() if self.wait else self.answer  # type: ignore[return-value]

    def on_response(self, exchange: Exchange) -> Block | Awaitable[Block | None] | None:
        return self._later() if self.wait else self.answer  # type: ignore[return-value]

    async def _later(self) -> object:
        return self.answer


async def _nothing() -> None:
    return None


@pytest.mark.parametrize("wait", [False, True], ids=["direct", "awaited"])
@pytest.mark.parametrize("answer", ["ok", 403, True, {"status": 403}], ids=["str", "int", "bool", "dict"])
def test_wrong_request_answer_is_a_stage_failure(answer: object, wait: bool) -> None:
    """A request hook answering anything but None/Block/Response (directly or awaited) fails
    closed with 500 and is counted, instead of raising into the proxy."""
    log: Transcript = []
    errors: list[str] = []
    chain = Chain([Wrong(answer, wait=wait), Recorder("b", log)], errors.append)
    ex = exchange()
    resp = run(chain.run_request(ex))
    assert isinstance(resp, Response) and resp.status == 500
    assert resp.header("content-type") == "application/problem+json"
    assert errors == ["wrong"]
    assert log == []
    assert [(d.stage, d.action, d.reason) for d in ex.decisions] == [("wrong", "error", "TypeError")]


def test_wrong_request_answer_fails_open_when_asked() -> None:
    """With failure_mode: open a wrongly typed answer is counted and the chain goes on."""
    log: Transcript = []
    errors: list[str] = []
    chain = Chain([Wrong("ok", StageConfig(failure_mode="open")), Recorder("b", log)], errors.append)
    assert chain.request(exchange()) is None
    assert log == [">> b.on_request"]
    assert errors == ["wrong"]


def test_awaitable_resolving_to_an_awaitable_is_a_wrong_answer() -> None:
    """An async hook that returns a coroutine (a forgotten await) fails, and the stray
    coroutine is closed rather than left to warn that it was never awaited."""
    stray = _nothing()
    resp = run(Chain([Wrong(stray, wait=True)]).run_request(exchange()))
    assert isinstance(resp, Response) and resp.status == 500
    assert stray.cr_frame is None  # closed


@pytest.mark.parametrize("wait", [False, True], ids=["direct", "awaited"])
def test_response_hook_answering_a_response_is_a_stage_failure(wait: bool) -> None:
    """A response hook may give only None or a Block: a Response (or anything else) replaces
    the upstream's response with a 500 problem, counted, and stops the response chain."""
    log: Transcript = []
    errors: list[str] = []
    chain = Chain([Recorder("a", log), Wrong(Response(200, [], b"other"), wait=wait)], errors.append)
    ex = exchange()
    ex.response = Response(200, [], b"upstream")
    run(chain.run_response(ex))
    assert ex.response.status == 500
    assert errors == ["wrong"]
    assert log == []  # "a" (earlier in order, later on the response side) never ran


class Fields(ResponseStage):
    """A stage whose response hook only adds a field (``adds_fields_only``): the same line
    through ``on_response`` and ``response_fields``, or a failure from both."""

    adds_fields_only = True

    def __init__(self, name: str, raise_: Exception | None = None) -> None:
        super().__init__(name, StageConfig())
        self.raise_ = raise_

    def on_response(self, exchange: Exchange) -> None:
        if self.raise_ is not None:
            raise self.raise_
        assert exchange.response is not None
        exchange.response.headers.append(("x-field", self.name))

    def response_fields(self, exchange: Exchange) -> bytes:
        if self.raise_ is not None:
            raise self.raise_
        return b"x-field: " + self.name.encode() + b"\r\n"


def test_only_field_stages_let_the_proxy_forward_heads() -> None:
    """A chain whose response hooks only add fields forwards heads (``forwards_heads``),
    with the fields in response-hook order; another response hook or a body hook turns
    that off, and a chain without response stages forwards heads with no fields."""
    both = Chain([Fields("a"), Fields("b")])
    assert both.forwards_heads and not both.passes_responses
    assert both.fields(exchange()) == b"x-field: b\r\nx-field: a\r\n"
    one = Chain([Fields("a")])
    assert one.fields(exchange()) == b"x-field: a\r\n"
    assert not Chain([Fields("a"), Recorder("r", [])]).forwards_heads
    bare = Chain([])
    assert bare.forwards_heads and bare.passes_responses and bare.field_stages == ()


def test_a_failing_field_stage_leaves_its_failure_to_the_response_hooks() -> None:
    """``fields`` gives ``None`` when a field stage raises, counting nothing; the response
    hooks the caller then runs fail the stage as any hook (500, counted once)."""
    errors: list[str] = []
    chain = Chain([Fields("a", raise_=RuntimeError("broken"))], errors.append)
    ex = exchange()
    assert chain.fields(ex) is None
    assert errors == []
    ex.response = Response(200, [], b"upstream")
    run(chain.run_response(ex))
    assert ex.response.status == 500
    assert errors == ["a"]
