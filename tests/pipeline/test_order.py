"""The registry's documented order is the order hooks really run in, on each side.

A transcript of hook calls (like mitmproxy's layer tests): head hooks, then request hooks,
top to bottom; response hooks, then body hooks on each piece, bottom to top; the record
last. Here through the chain alone (sans-IO); ``tests/proxy/test_order.py`` through the
real proxy.
"""

from __future__ import annotations

from bastion.pipeline import registry
from bastion.pipeline.chain import Chain
from bastion.pipeline.stage import HeadStage, RequestStage, ResponseBodyStage, ResponseStage, StageConfig
from bastion.types import Block, Exchange, Request, Response

Transcript = list[tuple[str, str]]


class Every(HeadStage, RequestStage, ResponseStage, ResponseBodyStage):
    """A stage with every hook, each noting its call in the transcript."""

    def __init__(self, name: str, transcript: Transcript) -> None:
        super().__init__(name, StageConfig())
        self.transcript = transcript

    def on_request_head(self, exchange: Exchange) -> None:
        self.transcript.append(("head", self.name))

    def on_request(self, exchange: Exchange) -> None:
        self.transcript.append(("request", self.name))

    def on_response(self, exchange: Exchange) -> Block | None:
        self.transcript.append(("response", self.name))
        return None

    def on_response_chunk(self, exchange: Exchange, chunk: bytes, final: bool) -> bytes:
        self.transcript.append(("final" if final else "chunk", self.name))
        return chunk


class Answers(ResponseStage):
    """Only a response hook."""

    def __init__(self, name: str, transcript: Transcript) -> None:
        super().__init__(name, StageConfig())
        self.transcript = transcript

    def on_response(self, exchange: Exchange) -> Block | None:
        self.transcript.append(("response", self.name))
        return None


def test_the_documented_order_is_the_registry() -> None:
    """The ``ORDER:`` line of the registry's docstring names the registry's stages, in order."""
    doc = registry.__doc__ or ""
    lines = [ln.strip() for ln in doc.splitlines()]
    (start,) = [i for i, ln in enumerate(lines) if ln.startswith("ORDER:")]
    text = lines[start]
    for more in lines[start + 1:]:  # the line may go on, each next line starting with "->"
        if not more.startswith("->"):
            break
        text += " " + more
    assert text.removeprefix("ORDER:").strip().split(" -> ") == [spec.name for spec in registry.ORDER]


def test_the_chain_runs_each_side_in_its_documented_order() -> None:
    """Head hooks, then request hooks, top to bottom; response hooks, then the body hooks on
    each piece, bottom to top (a stage without a hook of a phase is skipped there)."""
    transcript: Transcript = []
    chain = Chain([Every("first", transcript), Answers("middle", transcript), Every("last", transcript)])
    exchange = Exchange(Request("GET", "/x", "/x", "", [("host", "api.test")]), "req-1")
    assert chain.head(exchange) is None
    assert chain.request(exchange) is None
    exchange.response = Response(200, [], None)
    assert chain.response(exchange) is None
    body = chain.body_filter(exchange)
    assert body is not None
    assert body.feed(b"piece", False) == b"piece"
    assert body.feed(b"", True) == b""
    assert transcript == [
        ("head", "first"), ("head", "last"),
        ("request", "first"), ("request", "last"),
        ("response", "last"), ("response", "middle"), ("response", "first"),
        ("chunk", "last"), ("chunk", "first"),
        ("final", "last"), ("final", "first"),
    ]
