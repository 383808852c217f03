"""The hooks a chain calls: taken from each stage once, when the chain is built, and a stage
may hand another object's method in place of its own (a compiled hook)."""

from __future__ import annotations

from bastion.pipeline import Chain, HeadStage, RequestStage, ResponseStage, StageConfig
from bastion.pipeline.stage import RequestHook, ResponseHook
from bastion.types import Block, Exchange, Request, Response

FORBIDDEN = Block(403, "Forbidden", "Not for you.", reason="test.forbidden")


class Decider:
    """What a stage's compiled part would be: an object whose methods decide."""

    def __init__(self, log: list[str], outcome: Block | None = None, fail: bool = False) -> None:
        self.log = log
        self.outcome = outcome
        self.fail = fail

    def head(self, exchange: Exchange) -> Block | None:
        self.log.append("decider.head")
        return self._answer()

    def request(self, exchange: Exchange) -> Block | None:
        self.log.append("decider.request")
        return self._answer()

    def response(self, exchange: Exchange) -> Block | None:
        self.log.append("decider.response")
        return self._answer()

    def _answer(self) -> Block | None:
        if self.fail:
            raise RuntimeError("decider broke")
        return self.outcome


class Handing(HeadStage, RequestStage, ResponseStage):
    """A stage whose own hooks are never to be called: it hands its decider's methods."""

    def __init__(self, decider: Decider, config: StageConfig | None = None) -> None:
        super().__init__("handing", config or StageConfig())
        self.decider = decider

    def on_request_head(self, exchange: Exchange) -> Block | None:
        raise AssertionError("the chain called the stage's own head hook")

    def on_request(self, exchange: Exchange) -> Block | None:
        raise AssertionError("the chain called the stage's own request hook")

    def on_response(self, exchange: Exchange) -> Block | None:
        raise AssertionError("the chain called the stage's own response hook")

    def head_hook(self) -> RequestHook:
        return self.decider.head

    def request_hook(self) -> RequestHook:
        return self.decider.request

    def response_hook(self) -> ResponseHook:
        return self.decider.response


def exchange() -> Exchange:
    ex = Exchange(Request("GET", "/x", "/x", "", [("host", "api.test")]), "req-1")
    ex.response = Response(200, [], b"{}")
    return ex


def test_the_chain_calls_the_hooks_a_stage_hands() -> None:
    """Every phase calls the handed method, never the stage's own, and a ``None`` goes on."""
    log: list[str] = []
    chain = Chain([Handing(Decider(log))])
    ex = exchange()
    assert chain.head(ex) is None
    assert chain.request(ex) is None
    assert chain.response(ex) is None
    assert chain.response(ex, inspected=False) is None
    assert log == ["decider.head", "decider.request", "decider.response", "decider.response"]


def test_a_handed_hooks_block_is_the_stages_decision() -> None:
    """A block from a handed hook is recorded under the stage's name and refuses (403)."""
    chain = Chain([Handing(Decider([], FORBIDDEN))])
    ex = exchange()
    answer = chain.head(ex)
    assert isinstance(answer, Response) and answer.status == 403
    assert ex.blocked_by == "handing"
    assert [(d.stage, d.action, d.reason) for d in ex.decisions] == [("handing", "block", "test.forbidden")]


def test_a_handed_hook_failing_is_the_stages_failure() -> None:
    """A handed hook that raises fails its stage under the stage's failure mode: closed, a
    500 on the request side and in place of the response; open, the exchange goes on."""
    closed = Chain([Handing(Decider([], fail=True))])
    ex = exchange()
    answer = closed.request(ex)
    assert isinstance(answer, Response) and answer.status == 500
    assert [(d.stage, d.action, d.reason) for d in ex.decisions] == [("handing", "error", "RuntimeError")]
    ex = exchange()
    assert closed.response(ex) is None
    assert ex.response is not None and ex.response.status == 500

    fail_open = Chain([Handing(Decider([], fail=True), StageConfig(failure_mode="open"))])
    ex = exchange()
    assert fail_open.head(ex) is None
    assert not ex.blocked_by
    assert [(d.stage, d.action) for d in ex.decisions] == [("handing", "error")]


def test_a_handed_hooks_wrong_answer_fails_the_stage() -> None:
    """A handed hook answering something that is not a decision is the stage's failure,
    named for the hook, as when its own method does it."""
    errors: list[str] = []

    class Wrong(Decider):
        def head(self, exchange: Exchange) -> Block | None:
            return "yes"  # type: ignore[return-value]

    chain = Chain([Handing(Wrong([]))], errors.append)
    ex = exchange()
    answer = chain.head(ex)
    assert isinstance(answer, Response) and answer.status == 500
    assert errors == ["handing"]
    assert [(d.stage, d.reason) for d in ex.decisions] == [("handing", "TypeError")]
