"""The headers stage: safe response headers set, revealing ones removed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bastion.stages.headers import HeadersConfig, HeadersStage
from bastion.types import Exchange, Request, Response


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
