"""The cors stage's hooks on exchanges built by hand (sans-IO)."""

from __future__ import annotations

from typing import Any

from bastion.pipeline.chain import Chain
from bastion.pipeline.stage import RouteInfo
from bastion.stages.cors import CorsConfig, CorsStage
from bastion.types import Block, Decision, Exchange, Request, Response


def stage(**settings: Any) -> CorsStage:
    route = RouteInfo("r", "svc", "/items", frozenset({"GET", "HEAD"}), True)
    return CorsStage.from_config(CorsConfig.model_validate({"allow_origins": ["https://app.test"], **settings}), route)


def preflight(origin: str, method: str = "GET") -> Exchange:
    headers = [("origin", origin), ("access-control-request-method", method)]
    return Exchange(Request("OPTIONS", "/items", "/items", "", headers), "req-1")


def test_the_chain_knows_its_route_answers_preflights() -> None:
    """A chain with the cors stage says so (the proxy routes preflights by it); one without does not."""
    assert Chain([stage()]).answers_preflight and not Chain([]).answers_preflight


def test_preflight_answer_and_refusal() -> None:
    """An allowed preflight is answered 204 with the origin echoed (case-folded); another
    origin is a 403 block with reason cors.origin."""
    answer = stage().on_request_head(preflight("https://APP.test"))
    assert isinstance(answer, Response) and answer.status == 204
    assert answer.header("access-control-allow-origin") == "https://app.test"
    assert answer.header("access-control-allow-methods") == "GET, HEAD"
    refusal = stage().on_request_head(preflight("https://evil.test"))
    assert isinstance(refusal, Block) and refusal.status == 403 and refusal.reason == "cors.origin"


def test_shadow_mode_never_lets_a_refused_preflight_through() -> None:
    """``enforce: false``: a preflight that would be refused is answered 204 without any CORS
    header (so it is not forwarded, and the browser still refuses), recorded as monitor."""
    exchange = preflight("https://evil.test")
    answer = stage(enforce=False).on_request_head(exchange)
    assert isinstance(answer, Response) and answer.status == 204
    assert not [k for k, _ in answer.headers if k.startswith("access-control-")]
    assert exchange.decisions == [Decision("cors", "monitor", "cors.origin", 403)]


def test_plain_options_and_other_methods_pass_the_head() -> None:
    """An OPTIONS without Access-Control-Request-Method, and a GET with an Origin, go on."""
    plain = Exchange(Request("OPTIONS", "/items", "/items", "", [("origin", "https://app.test")]), "r")
    assert stage().on_request_head(plain) is None
    get = Exchange(Request("GET", "/items", "/items", "", [("origin", "https://app.test")]), "r")
    assert stage().on_request_head(get) is None


def test_actual_response_headers_replace_the_upstreams() -> None:
    """The upstream's Access-Control-* headers go; an allowed origin gets the gateway's, with
    Vary: Origin; a request without an Origin only the Vary."""
    for origin, expected in (("https://app.test", "https://app.test"), (None, None)):
        headers = [("origin", origin)] if origin else []
        exchange = Exchange(Request("GET", "/items", "/items", "", headers), "r")
        exchange.response = Response(200, [("access-control-allow-origin", "*"), ("vary", "accept-encoding")], b"")
        assert stage(expose_headers=["X-Total"]).on_response(exchange) is None
        got = dict(exchange.response.headers)
        assert got.get("access-control-allow-origin") == expected
        assert {("vary", "origin"), ("vary", "accept-encoding")} <= set(exchange.response.headers)
        assert got.get("access-control-expose-headers") == ("x-total" if origin else None)
