"""The ``auth`` stage's decision, built once per route: the 401 and its challenges."""

from __future__ import annotations

import asyncio
import inspect
import string
import time
from collections.abc import Awaitable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.pipeline import Chain, Pending
from bastion.pipeline.registry import ORDER
from bastion.pipeline.stage import HeadStage, RequestStage, ResponseStage, RouteInfo
from bastion.stages import auth
from bastion.stages.auth import SPEC, AuthConfig, AuthStage
from bastion.stages.auth.credentials import Malformed, bearer_token
from bastion.stages.auth.dispatch import Verifiers, b64token_looks_like_jwt, bearer_verifier, looks_like_jwt
from bastion.stages.auth.lockout import KnownLocks
from bastion.stages.auth.methods import AuthFailure, Verdict
from bastion.stages.auth.schemes import challenge
from bastion.stages.auth.stage import DETAIL_UNCONFIGURED, REASON_UNCONFIGURED
from bastion.state import MemoryBackend
from bastion.types import Block, Exchange, Principal, Request, Response

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


def unverified(config: AuthConfig, info: RouteInfo) -> AuthStage | None:
    """The route's stage (none on a public route) where nothing is configured that could
    verify a credential: the refusal decided at load."""
    return None if info.public else AuthStage(config, info, Verifiers())


def challenges(stage: AuthStage | None) -> list[str]:
    assert stage is not None and stage.refusal is not None
    return [v for k, v in stage.refusal.headers if k == "www-authenticate"]


def test_spec_and_public_api() -> None:
    """The package exposes its spec and exactly the names in ``__all__``; auth is on by default
    and first in the registry after ``tracing``, ``cors`` and ``blocklist`` (a request is
    authenticated before anything else looks at it; ``tracing`` only notes the trace context,
    ``cors`` only answers preflights, which carry no credentials, and ``blocklist`` only
    refuses clients a detector blocked); it is a head
    stage only (it decides before any of the body is read)."""
    assert (SPEC.name, SPEC.extension, SPEC.default_on) == ("auth", "x-bastion-auth", True)
    assert SPEC.config_model is AuthConfig and SPEC.route_check is not None
    assert [spec.name for spec in ORDER[:3]] == ["tracing", "cors", "blocklist"] and ORDER[3] is SPEC
    assert sorted(auth.__all__) == ["AuthConfig", "AuthStage", "SPEC", "auth_stage"]
    stage = unverified(AuthConfig(), route([{"bearerAuth": []}]))
    assert isinstance(stage, HeadStage)
    assert not isinstance(stage, (RequestStage, ResponseStage))


def test_refusal_is_a_401_problem_with_a_stable_reason() -> None:
    """A private route's refusal is 401 Unauthorized with the reason the access log and
    metrics use, and a detail that names no internals."""
    stage = unverified(AuthConfig(), route([{"bearerAuth": []}]))
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
    assert challenges(unverified(AuthConfig(), route(security))) == expected


@pytest.mark.parametrize(
    "info",
    [route([{"mtls": []}]), route(None), route(None, hand=True), route([{"undeclared": []}])],
    ids=["mutual-tls-only", "no-security-declared", "hand-written-route", "unknown-scheme"],
)
def test_a_401_always_carries_a_challenge(info: RouteInfo) -> None:
    """When no challenge can be derived (mTLS only, no scheme declared, a hand-written route,
    a scheme missing from components), the 401 still carries one (RFC 9110): Bearer."""
    assert challenges(unverified(AuthConfig(), info)) == ['Bearer realm="shop"']


def test_unsafe_text_from_the_document_never_reaches_the_header() -> None:
    """An API key name that is not an HTTP token (quotes, CR LF) is left out of the challenge:
    the document cannot inject header lines."""
    assert challenge(SCHEMES["evilKey"], "shop") == 'ApiKey realm="shop"'
    assert challenge({"type": "http", "scheme": "x\r\ny"}, "shop") is None


def test_public_routes_get_no_stage_and_delegated_ones_no_refusal() -> None:
    """A public route builds no auth stage at all; a delegated one builds a stage that refuses nothing."""
    assert AuthStage.from_config(AuthConfig(), route([], public=True)) is None
    delegated = unverified(AuthConfig(delegate="upstream"), route([{"bearerAuth": []}]))
    assert delegated is not None and delegated.delegated and delegated.refusal is None
    assert delegated.summary == "authentication (bearerAuth) delegated to upstream"


def test_summary_says_what_nothing_verifies() -> None:
    """`bastion check` prints, per refused route, which schemes it requires (alternatives with
    'or', schemes required together with '+')."""
    stage = unverified(AuthConfig(), route([{"apiKey": [], "basicAuth": []}, {"bearerAuth": []}]))
    assert stage is not None
    assert stage.summary == "401: requires apiKey + basicAuth or bearerAuth, which nothing here verifies"
    hand = unverified(AuthConfig(), route(None, hand=True))
    assert hand is not None
    assert hand.summary == "401: requires authentication, which nothing here verifies"
    delegated = unverified(AuthConfig(delegate="upstream"), route(None, hand=True))
    assert delegated is not None and delegated.summary == "authentication delegated to upstream"


class Table:
    """A verifier over a fixed table; answers through an awaitable when ``later``."""

    def __init__(self, table: dict[str, Principal], later: bool = False) -> None:
        self.table, self.later = table, later
        self.seen: list[str] = []

    def verify(self, credential: str) -> Verdict | Awaitable[Verdict]:
        self.seen.append(credential)
        verdict = self.table.get(credential) or AuthFailure("auth.key_unknown")
        return self._later(verdict) if self.later else verdict

    async def _later(self, verdict: Verdict) -> Verdict:
        return verdict

    async def start(self, services: Any) -> None:
        return None

    async def close(self) -> None:
        return None


KEYS = Verifiers(api_key=Table({}))
KEYS_AND_JWT = Verifiers(api_key=Table({}), jwt=Table({}))


def test_summary_says_what_each_alternative_takes() -> None:
    """`bastion check` prints, per route, where each alternative's credential is read, which
    kinds of bearer token are verified, the scopes required, and the alternatives nothing here
    verifies (never accepted)."""
    stage = AuthStage(
        AuthConfig(), route([{"apiKey": []}, {"bearerAuth": ["books:read"]}, {"mtls": []}]), KEYS_AND_JWT
    )
    assert stage.authenticates and stage.refusal is None
    assert stage.summary == (
        "api key (header X-API-Key) or bearer token (API key or JWT) with scopes books:read "
        "(not verified here, so never accepted: mtls)"
    )
    query = AuthStage(AuthConfig(), route([{"queryKey": []}]), KEYS)
    assert query.summary == (
        "api key (Authorization: Bearer bst_...; the query parameter api_key is ignored: api_keys.query is off)"
    )
    allowed = AuthStage(AuthConfig.model_validate({"api_keys": {"query": True}}), route([{"queryKey": []}]), KEYS)
    assert allowed.summary == "api key (query api_key)"
    mtls = AuthStage(AuthConfig(), route([{"mtls": []}]), KEYS_AND_JWT)
    assert mtls.refusal is not None and mtls.summary == "401: requires mtls, which nothing here verifies"


def test_a_hand_written_route_takes_a_bearer_token() -> None:
    """A private route that declares no scheme (hand-written) takes `Authorization: Bearer`
    credentials the route can verify; with none configured it keeps the load-time 401."""
    hand = AuthStage(AuthConfig(), route(None, hand=True), KEYS)
    assert hand.authenticates and hand.summary == "bearer token (API key)"
    assert AuthStage(AuthConfig(), route(None, hand=True), Verifiers()).refusal is not None


def test_api_keys_can_be_turned_off_and_basic_is_never_verified() -> None:
    """With API keys off and no other verifier, an apiKey or bearer route keeps the 401; a
    Basic scheme is never verified here (no password store), whatever is configured."""
    off = AuthConfig.model_validate({"api_keys": {"enabled": False}})
    assert AuthStage(off, route([{"apiKey": []}]), Verifiers()).refusal is not None
    basic = AuthStage(AuthConfig(), route([{"basicAuth": []}]), KEYS_AND_JWT)
    assert basic.refusal is not None


def test_the_stage_keeps_state_only_with_a_lockout() -> None:
    """`uses_state` (which makes several workers require a shared backend) is set only where
    the lockout is on, and never on a route that refuses or delegates everything."""
    info = route([{"apiKey": []}])
    assert not AuthStage(AuthConfig(), info, KEYS).uses_state
    locking = AuthConfig.model_validate({"lockout": {"enabled": True}})
    assert AuthStage(locking, info, KEYS).uses_state
    assert not AuthStage(locking, info, Verifiers()).uses_state
    assert not AuthStage(locking.model_copy(update={"delegate": "upstream"}), info, KEYS).uses_state


def test_bearer_tokens_go_to_the_verifier_of_their_shape() -> None:
    """`bst_` keys to the API key verifier, three base64url segments to the JWT verifier,
    anything else to introspection; a kind the route does not verify has none."""
    keys, jwt, intro = Table({}), Table({}), Table({})
    every = Verifiers(api_key=keys, jwt=jwt, introspection=intro)
    assert bearer_verifier("bst_abcdefgh_xyz", every) is keys
    assert bearer_verifier("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", every) is jwt
    assert bearer_verifier("eyJh.bGci.Oi.J9", every) is intro
    assert bearer_verifier("2YotnFZFEjr1zCsicMWpAA", every) is intro
    assert bearer_verifier("2YotnFZFEjr1zCsicMWpAA", Verifiers(api_key=keys, jwt=jwt)) is None


def exchange(*headers: tuple[str, str]) -> Exchange:
    return Exchange(Request("GET", "/orders", "/orders", "", list(headers)), "rid")


def test_a_credential_named_by_two_alternatives_is_verified_once() -> None:
    """`[{bearer: [a]}, {bearer: [b]}]`: the token is verified once, even through an
    awaitable, and the second alternative's scopes decide; without either scope: 403."""
    alice = Principal("c-alice", scopes=frozenset({"b"}))
    jwt = Table({"x.y.z": alice}, later=True)
    stage = AuthStage(AuthConfig(), route([{"bearerAuth": ["a"]}, {"bearerAuth": ["b"]}]), Verifiers(jwt=jwt))
    ex = exchange(("authorization", "Bearer x.y.z"))
    pending = stage.on_request_head(ex)
    assert inspect.isawaitable(pending)
    assert asyncio.run(_settle(pending)) is None
    assert ex.principal is alice and jwt.seen == ["x.y.z"]
    other = AuthStage(AuthConfig(), route([{"bearerAuth": ["c"]}]), Verifiers(jwt=Table({"x.y.z": alice})))
    refused = other.on_request_head(exchange(("authorization", "Bearer x.y.z")))
    assert isinstance(refused, Block) and (refused.status, refused.reason) == (403, "auth.scope")


async def _settle(awaitable: Any) -> Any:
    return await awaitable


def test_the_chain_decides_as_the_stage_with_and_without_a_lockout() -> None:
    """Through a chain, which calls the hook the stage hands it (``head_hook``: without a
    lockout, the compiled decider's own): a valid key sets the principal and the request goes
    on, an unknown key is a 401, a verifier answering later is awaited. With a lockout the
    hook still checks the client first: a failure is counted (the first one locks here:
    429), then even a valid key from that address is refused 429 without being read."""
    alice = Principal("c-alice")
    info = route([{"apiKey": []}])
    keys = Table({"bst_good": alice})
    chain = Chain([AuthStage(AuthConfig(), info, Verifiers(api_key=keys))])
    ok = exchange(("x-api-key", "bst_good"))
    assert chain.head(ok) is None and ok.principal is alice
    assert ok.request.headers == []  # the key is not forwarded
    refused = chain.head(exchange(("x-api-key", "bst_bad")))
    assert isinstance(refused, Response) and refused.status == 401
    later = Chain([AuthStage(AuthConfig(), info, Verifiers(api_key=Table({"bst_good": alice}, later=True)))])
    waited = exchange(("x-api-key", "bst_good"))
    pending = later.head(waited)
    assert isinstance(pending, Pending)
    assert asyncio.run(later.finish_head(waited, pending)) is None and waited.principal is alice

    locking = AuthConfig.model_validate({"lockout": {"enabled": True, "max_failures_per_ip": 1}})
    guarded = Table({"bst_good": alice})
    stage = AuthStage(locking, info, Verifiers(api_key=guarded))
    assert stage.lockout is not None
    stage.lockout.start(MemoryBackend(), KnownLocks(), time.monotonic)
    locked_chain = Chain([stage])
    bad = exchange(("x-api-key", "bst_bad"))
    counting = locked_chain.head(bad)
    assert isinstance(counting, Pending)
    answer = asyncio.run(locked_chain.finish_head(bad, counting))
    assert answer is not None and answer.status == 429
    again = locked_chain.head(exchange(("x-api-key", "bst_good")))
    assert isinstance(again, Response) and again.status == 429
    assert guarded.seen == ["bst_bad"]


def test_a_bearer_token_is_read_only_as_an_rfc_6750_b64token() -> None:
    """RFC 6750 2.1: letters, digits and `-._~+/`, then any `=` padding, is a token; every
    other character (each printable ASCII one tried, a space inside, non-ASCII, a NUL, `=`
    before the end), or nothing at all, is malformed; another scheme is no bearer token."""
    allowed = string.ascii_letters + string.digits + "-._~+/"

    def read(value: str) -> str | None:
        return bearer_token(Request("GET", "/", "/", "", [("authorization", value)]))

    assert read("Bearer " + allowed + "==") == allowed + "=="
    assert read("bearer  bst_ABCdef012 ") == "bst_ABCdef012"
    assert read("Basic dTpw") is None
    rejected = [c for c in map(chr, range(0x20, 0x7F)) if c not in allowed and c != "="]
    assert len(rejected) == 94 - len(allowed)
    for bad in ["", "=", "==ab", "a=b", "a b", "é", "a\x00", "ab\u200b", *(f"a{c}b" for c in rejected)]:
        with pytest.raises(Malformed):
            read("Bearer " + bad)


def test_a_jwt_is_recognised_by_its_compact_shape() -> None:
    """Three base64url parts (the signature may be empty: `alg: none`, refused by the JWT
    verifier by name) are a JWT; anything else (an empty header or payload, two or four
    parts, padding, `+` or `/`, non-ASCII) goes to introspection, or nowhere."""
    b64url = string.ascii_letters + string.digits + "-_"
    for token in ["a.b.c", "a.b.", f"{b64url}.{b64url}.{b64url}"]:
        assert looks_like_jwt(token), token
    for token in ["", ".", "..", ".b.c", "a..c", "a.b", "a.b.c.d", "a.b.c=", "a+b.c", "a/b.c", "é.b.c", "a b.c"]:
        assert not looks_like_jwt(token), token


#: RFC 6750 b64tokens, dots and each punctuation character frequent: what bearer_token returns.
_B64TOKENS = st.builds(
    lambda body, padding: body + padding,
    st.text(alphabet=string.ascii_letters[:3] + string.digits[:2] + "-._~+/" * 4, min_size=1, max_size=24),
    st.sampled_from(["", "=", "=="]),
)


@given(_B64TOKENS)
def test_the_b64token_jwt_shape_test_agrees_with_the_full_one(token: str) -> None:
    """On every b64token (the only tokens the dispatch sees: bearer_token refused the rest),
    the shape test by dots and excluded characters answers as the full character test does,
    so the cheaper one sends no token to another verifier."""
    assert bearer_token(Request("GET", "/", "/", "", [("authorization", "Bearer " + token)])) == token
    assert b64token_looks_like_jwt(token) == looks_like_jwt(token), token
