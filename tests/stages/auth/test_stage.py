"""The ``auth`` stage's decision, built once per route: the 401 and its challenges."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.pipeline.registry import ORDER
from bastion.pipeline.stage import RequestStage, ResponseStage, RouteInfo
from bastion.stages import auth
from bastion.stages.auth import SPEC, AuthConfig, AuthStage
from bastion.stages.auth.stage import DETAIL_UNCONFIGURED, REASON_UNCONFIGURED, challenge

KEY = 'ApiKey realm="shop", in="header", name="X-API-Key"'
SCHEMES: dict[str, Any] = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "basicAuth": {"type": "http", "scheme": "Basic"},
    "oauth": {"type": "oauth2", "flows": {}},
    "oidc": {"type": "openIdConnect", "openIdConnectUrl": "https://id.test/.well-known/openid-configuration"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "queryKey": {"type": "apiKey", "in": "query", "name": "api_key"},
    "evilKey": {"type": "apiKey", "in": "header", "name": 'X"\r\nSet-Cookie: a=b'},
    "mtls": {"type": "mutualTLS"},
    "aliased": {"$ref": "#/components/securitySchemes/basicAuth"},
}


def route(security: list[dict[str, list[str]]] | None, *, public: bool = False, hand: bool = False) -> RouteInfo:
    operation: dict[str, Any] = {"responses": {}}
    if security is not None:
        operation["security"] = security
    doc = {"openapi": "3.1.0", "components": {"securitySchemes": SCHEMES}}
    return RouteInfo(
        "op", "shop", "/orders", frozenset({"GET"}), public, None if hand else operation, None if hand else doc
    )


def challenges(stage: AuthStage | None) -> list[str]:
    assert stage is not None and stage.refusal is not None
    return [v for k, v in stage.refusal.headers if k == "www-authenticate"]


def test_spec_and_public_api() -> None:
    """The package exposes its spec and exactly the names in ``__all__``; auth is on by default
    and first in the registry (a request is authenticated before anything else looks at it);
    it has no request or response hook (its decision is taken from the head, by the proxy)."""
    assert (SPEC.name, SPEC.extension, SPEC.default_on) == ("auth", "x-bastion-auth", True)
    assert SPEC.config_model is AuthConfig and SPEC.route_check is not None
    assert ORDER[0] is SPEC
    assert sorted(auth.__all__) == ["AuthConfig", "AuthStage", "SPEC", "auth_stage"]
    stage = AuthStage.from_config(AuthConfig(), route([{"bearerAuth": []}]))
    assert not isinstance(stage, (RequestStage, ResponseStage))


def test_refusal_is_a_401_problem_with_a_stable_reason() -> None:
    """A private route's refusal is 401 Unauthorized with the reason the access log and
    metrics use, and a detail that names no internals."""
    stage = AuthStage.from_config(AuthConfig(), route([{"bearerAuth": []}]))
    assert stage is not None and stage.refusal is not None
    assert (stage.refusal.status, stage.refusal.title) == (401, "Unauthorized")
    assert stage.refusal.reason == REASON_UNCONFIGURED == "auth.unconfigured"
    assert stage.refusal.detail == DETAIL_UNCONFIGURED


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        ([{"bearerAuth": []}], ['Bearer realm="shop"']),
        ([{"basicAuth": []}], ['Basic realm="shop"']),
        ([{"oauth": ["orders:read"]}, {"oidc": []}], ['Bearer realm="shop"']),
        ([{"apiKey": []}], [KEY]),
        ([{"queryKey": []}], ['ApiKey realm="shop", in="query", name="api_key"']),
        ([{"apiKey": []}, {"bearerAuth": []}], [KEY, 'Bearer realm="shop"']),
        ([{"apiKey": [], "basicAuth": []}], [KEY, 'Basic realm="shop"']),
        ([{"aliased": []}], ['Basic realm="shop"']),
    ],
)
def test_challenges_follow_the_declared_schemes(security: list[dict[str, list[str]]], expected: list[str]) -> None:
    """Each declared scheme gives its RFC 9110 challenge once: Bearer for bearer tokens,
    OAuth 2 and OpenID Connect, Basic for basic, an ApiKey challenge saying where the key goes."""
    assert challenges(AuthStage.from_config(AuthConfig(), route(security))) == expected


@pytest.mark.parametrize(
    "info",
    [route([{"mtls": []}]), route(None), route(None, hand=True), route([{"undeclared": []}])],
    ids=["mutual-tls-only", "no-security-declared", "hand-written-route", "unknown-scheme"],
)
def test_a_401_always_carries_a_challenge(info: RouteInfo) -> None:
    """When no challenge can be derived (mTLS only, no scheme declared, a hand-written route,
    a scheme missing from components), the 401 still carries one (RFC 9110): Bearer."""
    assert challenges(AuthStage.from_config(AuthConfig(), info)) == ['Bearer realm="shop"']


def test_unsafe_text_from_the_document_never_reaches_the_header() -> None:
    """An API key name that is not an HTTP token (quotes, CR LF) is left out of the challenge:
    the document cannot inject header lines."""
    assert challenge(SCHEMES["evilKey"], "shop") == 'ApiKey realm="shop"'
    assert challenge({"type": "http", "scheme": "x\r\ny"}, "shop") is None


def test_public_routes_get_no_stage_and_delegated_ones_no_refusal() -> None:
    """A public route builds no auth stage at all; a delegated one builds a stage that refuses nothing."""
    assert AuthStage.from_config(AuthConfig(), route([], public=True)) is None
    delegated = AuthStage.from_config(AuthConfig(delegate="upstream"), route([{"bearerAuth": []}]))
    assert delegated is not None and delegated.delegated and delegated.refusal is None
    assert delegated.summary == "authentication (bearerAuth) delegated to upstream"


def test_summary_says_what_nothing_verifies() -> None:
    """`bastion check` prints, per refused route, which schemes it requires (alternatives with
    'or', schemes required together with '+')."""
    stage = AuthStage.from_config(AuthConfig(), route([{"apiKey": [], "basicAuth": []}, {"bearerAuth": []}]))
    assert stage is not None
    assert stage.summary == "401: requires apiKey + basicAuth or bearerAuth, which nothing here verifies"
    hand = AuthStage.from_config(AuthConfig(), route(None, hand=True))
    assert hand is not None
    assert hand.summary == "401: requires authentication, which nothing here verifies"
    delegated = AuthStage.from_config(AuthConfig(delegate="upstream"), route(None, hand=True))
    assert delegated is not None and delegated.summary == "authentication delegated to upstream"
