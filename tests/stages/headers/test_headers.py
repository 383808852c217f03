"""The headers stage: safe response headers set, revealing ones removed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bastion.stages.headers import HeadersConfig, HeadersStage
from bastion.types import Exchange, Principal, Request, Response


def respond(config: HeadersConfig, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    ex = Exchange(Request("GET", "/", "/", "", []), "id")
    ex.response = Response(200, list(headers), b"")
    assert HeadersStage(config).on_response(ex) is None
    return ex.response.headers


def test_defaults_set_security_headers_and_strip_server() -> None:
    """By default nosniff, frame denial, CSP and no-referrer are set; Server and X-Powered-By removed."""
    out = dict(respond(HeadersConfig(), [("server", "nginx/1.2"), ("x-powered-by", "PHP"), ("content-type", "a/b")]))
    assert "server" not in out and "x-powered-by" not in out
    assert out["x-content-type-options"] == "nosniff"
    assert out["x-frame-options"] == "DENY"
    assert out["content-security-policy"].startswith("default-src 'none'")
    assert out["content-type"] == "a/b"


def test_upstream_value_replaced_and_add_if_missing() -> None:
    """set replaces an upstream value; add_if_missing only fills a gap."""
    cfg = HeadersConfig(set={"X-Frame-Options": "SAMEORIGIN"}, add_if_missing={"cache-control": "no-store"})
    out = respond(cfg, [("x-frame-options", "ALLOW"), ("cache-control", "max-age=60")])
    assert ("x-frame-options", "SAMEORIGIN") in out and ("x-frame-options", "ALLOW") not in out
    assert [v for k, v in out if k == "cache-control"] == ["max-age=60"]
    out = respond(cfg, [])
    assert ("cache-control", "no-store") in out


@pytest.mark.parametrize("bad", [{"bad name": "x"}, {"x-ok": "a\r\nSet-Cookie: x=1"}])
def test_invalid_header_config_rejected(bad: dict[str, str]) -> None:
    """Header names must be tokens and values must not allow response splitting."""
    with pytest.raises(ValidationError):
        HeadersConfig(set=bad)


def test_leaking_headers_and_prefixes_removed_by_default() -> None:
    """X-Runtime, X-AspNetMvc-Version, X-Generator and every X-Debug-* header go by default;
    a header that merely resembles one stays."""
    out = dict(respond(HeadersConfig(), [("x-runtime", "0.012"), ("x-aspnetmvc-version", "5.2"),
                                         ("x-debug-token", "a1"), ("x-debug-token-link", "/_profiler/a1"),
                                         ("x-generator", "Drupal 7"), ("x-debugger", "kept")]))
    assert set(out) >= {"x-debugger"}
    for gone in ("x-runtime", "x-aspnetmvc-version", "x-debug-token", "x-debug-token-link", "x-generator"):
        assert gone not in out


def signed_in(config: HeadersConfig, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    ex = Exchange(Request("GET", "/", "/", "", []), "id")
    ex.principal = Principal("alice")
    ex.response = Response(200, list(headers), b"")
    assert HeadersStage(config).on_response(ex) is None
    return ex.response.headers


def test_authenticated_responses_are_not_cached() -> None:
    """A response to a signed-in request gets exactly one ``Cache-Control: no-store``, replacing
    the upstream's (and an add_if_missing one); an anonymous one keeps the upstream's; a route
    may set another value, or null to leave the upstream's."""
    upstream = [("cache-control", "public, max-age=3600")]
    cfg = HeadersConfig(add_if_missing={"cache-control": "max-age=5"})
    assert [v for k, v in signed_in(cfg, upstream) if k == "cache-control"] == ["no-store"]
    assert [v for k, v in signed_in(cfg, []) if k == "cache-control"] == ["no-store"]
    assert [v for k, v in respond(cfg, upstream) if k == "cache-control"] == ["public, max-age=3600"]
    private = HeadersConfig(authenticated_cache_control="private, max-age=60")
    assert [v for k, v in signed_in(private, upstream) if k == "cache-control"] == ["private, max-age=60"]
    untouched = HeadersConfig(authenticated_cache_control=None)
    assert [v for k, v in signed_in(untouched, upstream) if k == "cache-control"] == ["public, max-age=3600"]


@pytest.mark.parametrize("bad", [{"remove": ["x debug*"]}, {"authenticated_cache_control": "no-store\r\nx: 1"},
                                 {"authenticated_cache_control": ""}])
def test_invalid_removals_and_cache_control_rejected(bad: dict[str, object]) -> None:
    """A removal must be a header name or a prefix ending in ``*``; the cache value one line."""
    with pytest.raises(ValidationError):
        HeadersConfig.model_validate(bad)


@pytest.mark.parametrize("principal", [None, Principal("alice")])
def test_the_chain_runs_the_compiled_rewrite_as_the_stage_does(principal: Principal | None) -> None:
    """The chain calls the stage's compiled rewrite (its handed hook), not the stage's own
    method, and the response it gets is the one ``on_response`` gives, anonymous or signed
    in (the route's Cache-Control for authenticated responses)."""
    from bastion.pipeline import Chain
    from bastion.stages.headers.rewrite import HeaderRewrite

    cfg = HeadersConfig(authenticated_cache_control="private, no-store")
    stage = HeadersStage(cfg)
    hook = stage.response_hook()
    assert isinstance(hook.__self__, HeaderRewrite)  # type: ignore[attr-defined]
    upstream = [("server", "nginx"), ("cache-control", "max-age=60"), ("content-type", "a/b")]
    through_stage = Exchange(Request("GET", "/", "/", "", []), "id")
    through_chain = Exchange(Request("GET", "/", "/", "", []), "id")
    for ex in (through_stage, through_chain):
        ex.principal = principal
        ex.response = Response(200, list(upstream), b"")
    assert stage.on_response(through_stage) is None
    assert Chain([stage]).response(through_chain) is None
    assert through_chain.response is not None and through_stage.response is not None
    assert through_chain.response.headers == through_stage.response.headers
    cache = [v for k, v in through_chain.response.headers if k == "cache-control"]
    assert cache == (["max-age=60"] if principal is None else ["private, no-store"])
