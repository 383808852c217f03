"""The auth stage verifying credentials, through the real proxy over real sockets.

The real verifiers (API keys from the store, JWTs) are built elsewhere; here each kind is a
small class implementing :class:`CredentialVerifier` over a fixed table of credentials, put
in every route's auth stage. The API key verifier answers at once, the JWT verifier only
through an awaitable (as one fetching a JWKS would), so both of the chain's paths run. The
gateway runs in this process (its listener on its own event loop), the upstream is the
scripted one, the clients raw sockets.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bastion.config.loader import LoadedConfig
from bastion.services import Clock, Services
from bastion.stages.auth import AuthStage, auth_stage
from bastion.stages.auth.dispatch import Verifiers
from bastion.stages.auth.methods import AuthFailure, Verdict
from bastion.types import Principal

from .conftest import SHARED_UPSTREAM
from .inprocess import InProcessGateway
from .scripted import ScriptedUpstream
from .test_head_phase import SOCKET_BUFFERS, UPLOAD, _upload_until_answered
from .util import assert_problem, build, keepalive, one

MB = 1024 * 1024

OPENAPI = """\
openapi: 3.1.0
info: {title: shop, version: "1"}
security:
  - apiKey: []
  - bearerAuth: []
paths:
  /orders:
    get:
      operationId: listOrders
      responses: {"200": {description: ok}}
    post:
      operationId: createOrder
      security: [{bearerAuth: [orders:write]}]
      requestBody:
        content: {application/octet-stream: {schema: {type: string, format: binary}}}
      responses: {"201": {description: created}}
  /both:
    get:
      operationId: both
      security: [{apiKey: [], bearerAuth: []}]
      responses: {"200": {description: ok}}
  /reports:
    get:
      operationId: reports
      security: [{bearerAuth: [reports:read]}, {apiKey: [orders:write]}]
      responses: {"200": {description: ok}}
  /search:
    get:
      operationId: search
      security: [{queryKey: []}]
      responses: {"200": {description: ok}}
  /search-open:
    get:
      operationId: searchOpen
      security: [{queryKey: []}]
      x-bastion-auth: {api_keys: {query: true}}
      responses: {"200": {description: ok}}
  /session:
    get:
      operationId: session
      security: [{cookieKey: []}, {bearerAuth: []}]
      responses: {"200": {description: ok}}
  /cert:
    get:
      operationId: cert
      security: [{mtls: []}]
      responses: {"200": {description: ok}}
  /cert-or-key:
    get:
      operationId: certOrKey
      security: [{mtls: []}, {apiKey: []}]
      responses: {"200": {description: ok}}
components:
  securitySchemes:
    apiKey: {type: apiKey, in: header, name: X-API-Key}
    bearerAuth: {type: http, scheme: bearer, bearerFormat: JWT}
    queryKey: {type: apiKey, in: query, name: api_key}
    cookieKey: {type: apiKey, in: cookie, name: session}
    mtls: {type: mutualTLS}
"""

ALICE_KEY = "bst_alice001_" + "a" * 43
BOB_KEY = "bst_bob00001_" + "b" * 43
#: Alice's key id with another secret: a wrong key, where an unknown one has an unknown id.
WRONG_KEY = "bst_alice001_" + "z" * 43
UNKNOWN_KEY = "bst_nobody01_" + "c" * 43


def unknown_key(i: int) -> str:
    """Unknown keys with distinct ids (counted per address only, not per credential)."""
    return f"bst_nobody{i:02d}_" + "d" * 43
CAROL_JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjYXJvbCJ9.c2lnLWNhcm9s"
ALICE_JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnLWFsaWNl"
DAVE_JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJkYXZlIn0.c2lnLWRhdmU"
FORGED_JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJkYXZlIn0.Zm9yZ2Vk"
#: A token whose issuer's JWKS endpoint is down: the verifier answers 503.
DOWN_JWT = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJkb3duIn0.c2ln"

CHALLENGES = ['ApiKey realm="shop", in="header", name="X-API-Key"', 'Bearer realm="shop"']


class KeyTable:
    """API keys: a fixed table, answered at once (as the key snapshot answers)."""

    def __init__(self) -> None:
        self.table = {
            ALICE_KEY: Principal("c-alice", "alice", "bst_alice001", frozenset({"orders:read"})),
            BOB_KEY: Principal("c-bob", "bob", "bst_bob00001", frozenset({"orders:read", "orders:write"})),
        }
        self.seen: list[str] = []
        self.started: list[Services] = []
        self.closed = 0

    def verify(self, credential: str) -> Verdict | Awaitable[Verdict]:
        self.seen.append(credential)
        found = self.table.get(credential)
        if found is not None:
            return found
        if any(key[:12] == credential[:12] for key in self.table):
            return AuthFailure("auth.key_mismatch")
        return AuthFailure("auth.key_unknown")

    async def start(self, services: Services) -> None:
        self.started.append(services)

    async def close(self) -> None:
        self.closed += 1


class TokenTable(KeyTable):
    """JWTs: a fixed table, answered only after a trip through the event loop (as a
    verifier that fetches a JWKS answers an unknown key)."""

    def __init__(self) -> None:
        super().__init__()
        self.table = {
            CAROL_JWT: Principal("c-carol", "carol", "jwt-carol", frozenset({"orders:read", "reports:read"})),
            # Alice's own token: a JWT names its consumer by ``sub`` (the id differs from the
            # key's store id), the name is the same.
            ALICE_JWT: Principal("alice", "alice", "jwt-alice", frozenset({"orders:read"})),
            DAVE_JWT: Principal("c-dave", "dave", "jwt-dave", frozenset({"orders:write"})),
        }

    def verify(self, credential: str) -> Verdict | Awaitable[Verdict]:
        self.seen.append(credential)
        return self._later(credential)

    async def _later(self, credential: str) -> Verdict:
        await asyncio.sleep(0)
        if credential == DOWN_JWT:
            return AuthFailure("auth.jwks_unavailable", status=503)
        return self.table.get(credential) or AuthFailure("auth.signature")


def with_verifiers(verifiers: Verifiers) -> Callable[[LoadedConfig], LoadedConfig]:
    """Rebuild each route's auth stage, from its own settings and route, with ``verifiers``."""

    def adjust(loaded: LoadedConfig) -> LoadedConfig:
        routes = []
        for r in loaded.routes:
            auth = auth_stage(r.built)
            if auth is not None and not auth.delegated:
                rebuilt = AuthStage(auth.config, auth.route, verifiers)  # type: ignore[arg-type]
                r = replace(r, built=tuple(rebuilt if s is auth else s for s in r.built))
            routes.append(r)
        return replace(loaded, routes=tuple(routes))

    return adjust


def shop_config(upstream: ScriptedUpstream, policies: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shop service (bodies up to 100 MB), behind a listener that believes loopback's
    X-Forwarded-For (so a test can speak from several client addresses) and X-Request-ID (so
    it can name the record of a request it sends raw)."""
    return {
        "listen": {"host": "127.0.0.1", "trusted_proxies": ["127.0.0.1/32"]},
        "policies": policies or {},
        "services": [{
            "name": "shop",
            "upstream": {"targets": [upstream.url], **SHARED_UPSTREAM},
            "openapi": "shop.yaml",
            "max_body_bytes": 100 * MB,
        }],
    }


class Shop:
    """A running shop gateway and its verifiers."""

    def __init__(self, gw: InProcessGateway, keys: KeyTable, tokens: TokenTable) -> None:
        self.gw, self.keys, self.tokens = gw, keys, tokens
        self.port = gw.port

    def record(self, request_id: object) -> dict[str, Any]:
        (found,) = [r for r in self.gw.access_records() if r["request_id"] == request_id]
        return found


@pytest.fixture(scope="module")
def shop(upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    keys, tokens = KeyTable(), TokenTable()
    folder = tmp_path_factory.mktemp("shop")
    with InProcessGateway(
        shop_config(upstream), folder, None, adjust=with_verifiers(Verifiers(api_key=keys, jwt=tokens)),
        files={"shop.yaml": OPENAPI},
    ) as gw:
        yield Shop(gw, keys, tokens)


def get(shop: Shop, path: str, *headers: tuple[str, str]) -> Any:
    return one(shop, "GET", path, list(headers))  # type: ignore[arg-type]


def test_verifiers_start_with_the_worker_services(shop: Shop) -> None:
    """Each verifier is started with the worker's services before the gateway serves (once
    per route that uses it: the same object here)."""
    assert shop.keys.started and all(s is shop.gw.services for s in shop.keys.started)
    assert shop.tokens.started and all(s is shop.gw.services for s in shop.tokens.started)


def test_either_alternative_lets_the_request_through_and_names_the_consumer(
    shop: Shop, upstream: ScriptedUpstream, token: str
) -> None:
    """An operation that takes an API key or a bearer JWT forwards a request carrying either;
    the access record names the consumer and credential the verifier proved, and the upstream
    gets the request."""
    for header, consumer, credential in (
        (("X-API-Key", ALICE_KEY), "c-alice", "bst_alice001"),
        (("Authorization", f"Bearer {CAROL_JWT}"), "c-carol", "jwt-carol"),
        (("Authorization", f"Bearer {BOB_KEY}"), "c-bob", "bst_bob00001"),  # a key as a bearer token
    ):
        resp = get(shop, f"/orders?{token}", header)
        assert resp.status == 200, resp.body
        record = shop.record(resp.header("x-request-id"))
        assert (record["consumer"], record["credential"]) == (consumer, credential)
        assert "blocked_by" not in record
    assert len(upstream.records(token)) == 3


def test_no_credential_is_a_401_with_bare_challenges(shop: Shop, upstream: ScriptedUpstream, token: str) -> None:
    """Without any credential the answer is 401 problem+json whose challenges (one per scheme
    the operation takes) carry no error (RFC 6750 3.1), recorded as auth.missing; an
    Authorization header of another scheme (Basic) counts as no credential."""
    for headers in ((), (("Authorization", "Basic YWxpY2U6c2VjcmV0"),)):
        resp = get(shop, f"/orders?{token}", *headers)
        doc = assert_problem(resp, 401)
        assert resp.header_all("www-authenticate") == CHALLENGES
        assert doc["title"] == "Unauthorized"
        record = shop.record(doc["request_id"])
        assert record["blocked_by"] == "auth"
        assert record["decisions"] == [{"stage": "auth", "action": "block", "reason": "auth.missing"}]
        assert "consumer" not in record
    assert not upstream.saw(token)


def test_unknown_and_wrong_keys_get_the_same_answer(shop: Shop, upstream: ScriptedUpstream, token: str) -> None:
    """An unknown key and a known key id with a wrong secret (and a forged JWT) are refused
    with the same status, body and challenges (error="invalid_token"); only the access
    record tells the reasons apart, and it holds no secret."""
    answers, reasons = [], []
    for header in (("X-API-Key", UNKNOWN_KEY), ("X-API-Key", WRONG_KEY), ("Authorization", f"Bearer {FORGED_JWT}")):
        resp = get(shop, f"/orders?{token}", header)
        doc = assert_problem(resp, 401)
        assert resp.header_all("www-authenticate") == [f'{c}, error="invalid_token"' for c in CHALLENGES]
        answers.append((resp.status, {k: v for k, v in doc.items() if k != "request_id"}))
        record = shop.record(doc["request_id"])
        reasons.append(record["decisions"][0]["reason"])
        text = str(record)
        assert UNKNOWN_KEY[13:] not in text and WRONG_KEY[13:] not in text and FORGED_JWT not in text
    assert answers[0] == answers[1] == answers[2]
    assert reasons == ["auth.key_unknown", "auth.key_mismatch", "auth.signature"]
    assert not upstream.saw(token)


def test_schemes_required_together_need_every_credential(
    shop: Shop, upstream: ScriptedUpstream, token: str
) -> None:
    """`{apiKey: [], bearerAuth: []}` requires both: either alone is a 401, both of one
    consumer together pass, and the principal is the first scheme's (the API key's consumer).
    A key and a token of two consumers never add up to one (alice's key would borrow carol's
    token's scopes): 401 invalid_token, recorded as auth.consumer_mismatch."""
    assert_problem(get(shop, f"/both?{token}", ("X-API-Key", ALICE_KEY)), 401)
    assert_problem(get(shop, f"/both?{token}", ("Authorization", f"Bearer {ALICE_JWT}")), 401)
    resp = get(shop, f"/both?{token}", ("X-API-Key", ALICE_KEY), ("Authorization", f"Bearer {ALICE_JWT}"))
    assert resp.status == 200
    assert shop.record(resp.header("x-request-id"))["consumer"] == "c-alice"
    mixed = get(shop, f"/both?{token}", ("X-API-Key", ALICE_KEY), ("Authorization", f"Bearer {CAROL_JWT}"))
    doc = assert_problem(mixed, 401)
    assert 'error="invalid_token"' in mixed.header("www-authenticate")
    assert shop.record(doc["request_id"])["decisions"][0]["reason"] == "auth.consumer_mismatch"
    bad = get(shop, f"/both?{token}", ("X-API-Key", ALICE_KEY), ("Authorization", f"Bearer {FORGED_JWT}"))
    assert_problem(bad, 401)
    assert 'error="invalid_token"' in bad.header("www-authenticate")
    assert len(upstream.records(token)) == 1


def test_a_missing_scope_is_a_403_naming_the_scopes(shop: Shop, upstream: ScriptedUpstream, token: str) -> None:
    """A valid credential without the scope the operation lists gets 403 problem+json with
    `error="insufficient_scope"` and the scopes required; one with it passes."""
    resp = one(shop, "POST", f"/orders?{token}", [("Authorization", f"Bearer {CAROL_JWT}"),  # type: ignore[arg-type]
                                                   ("Content-Type", "application/octet-stream")], b"x")
    doc = assert_problem(resp, 403)
    assert doc["title"] == "Forbidden"
    assert resp.header_all("www-authenticate") == [
        'Bearer realm="shop", error="insufficient_scope", scope="orders:write"'
    ]
    assert shop.record(doc["request_id"])["decisions"][0]["reason"] == "auth.scope"
    ok = one(shop, "POST", f"/orders?{token}", [("Authorization", f"Bearer {DAVE_JWT}"),  # type: ignore[arg-type]
                                                 ("Content-Type", "application/octet-stream")], b"x")
    assert ok.status == 200
    assert [r.method for r in upstream.records(token)] == ["POST"]


def test_the_first_alternative_with_its_scopes_wins(shop: Shop, upstream: ScriptedUpstream, token: str) -> None:
    """`[{bearerAuth: [reports:read]}, {apiKey: [orders:write]}]`: Carol's token has
    reports:read, Bob's key orders:write (both pass); Alice's key lacks orders:write (403),
    and a 403 of one alternative does not hide another that succeeds."""
    assert get(shop, f"/reports?{token}", ("Authorization", f"Bearer {CAROL_JWT}")).status == 200
    assert get(shop, f"/reports?{token}", ("X-API-Key", BOB_KEY)).status == 200
    resp = get(shop, f"/reports?{token}", ("X-API-Key", ALICE_KEY))
    assert_problem(resp, 403)
    assert resp.header("www-authenticate") == (
        'ApiKey realm="shop", in="header", name="X-API-Key", error="insufficient_scope", scope="orders:write"'
    )
    both = get(shop, f"/reports?{token}", ("X-API-Key", ALICE_KEY), ("Authorization", f"Bearer {CAROL_JWT}"))
    assert both.status == 200
    assert shop.record(both.header("x-request-id"))["consumer"] == "c-carol"
    assert len(upstream.records(token)) == 3


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ([("Authorization", f"Bearer {CAROL_JWT}"), ("Authorization", f"Bearer {DAVE_JWT}")], "two tokens"),
        ([("X-API-Key", ALICE_KEY), ("X-API-Key", BOB_KEY)], "the key header twice"),
        ([("Authorization", "Bearer two words")], "not a b64token"),
        ([("Authorization", "Bearer ")], "an empty token"),
    ],
)
def test_a_malformed_credential_is_a_400_invalid_request(
    shop: Shop, upstream: ScriptedUpstream, token: str, headers: list[tuple[str, str]], why: str
) -> None:
    """RFC 6750 3.1: a request that repeats a credential or carries a badly formed token gets
    400 with `error="invalid_request"` (never forwarded)."""
    resp = get(shop, f"/orders?{token}", *headers)
    doc = assert_problem(resp, 400)
    assert resp.header_all("www-authenticate") == [f'{c}, error="invalid_request"' for c in CHALLENGES], why
    assert shop.record(doc["request_id"])["decisions"][0]["reason"] == "auth.malformed"
    assert not upstream.saw(token)


def test_a_query_key_is_read_only_where_the_route_allows_it(
    shop: Shop, upstream: ScriptedUpstream, token: str
) -> None:
    """An `apiKey` scheme `in: query` is ignored unless the route sets `api_keys.query: true`:
    the key in the URL proves nothing (401, no error: no credential was read), while the same
    key as a bearer token works; where allowed, the query key passes."""
    refused = get(shop, f"/search?api_key={ALICE_KEY}&{token}")
    assert_problem(refused, 401)
    assert refused.header("www-authenticate") == 'ApiKey realm="shop", in="query", name="api_key"'
    assert get(shop, f"/search?{token}", ("Authorization", f"Bearer {ALICE_KEY}")).status == 200
    assert get(shop, f"/search-open?api_key={ALICE_KEY}&{token}").status == 200
    assert [r.path for r in upstream.records(token)] == ["/search", "/search-open"]


def test_bastion_keys_never_reach_the_upstream(shop: Shop, upstream: ScriptedUpstream, token: str) -> None:
    """A Bastion API key the stage accepted is removed from what the upstream receives,
    wherever it was (its header, a bearer token, a cookie, the query string, percent-encoded
    too), leaving everything else of the request as it was; so is one carried beside the
    credential that verified (an alternative never tried), while a JWT is forwarded."""
    cases: list[tuple[str, list[tuple[str, str]]]] = [
        (f"/orders?{token}&n=1", [("X-API-Key", ALICE_KEY), ("X-Other", "kept")]),
        (f"/orders?{token}&n=2", [("Authorization", f"Bearer {BOB_KEY}")]),
        (f"/session?{token}&n=3", [("Cookie", f"theme=dark; session={ALICE_KEY}; lang=en")]),
        (f"/session?{token}&n=4", [("Cookie", f"session={ALICE_KEY}")]),
        (f"/search-open?a=1&api_key={ALICE_KEY}&{token}&n=5", []),
        (f"/search-open?api_key=%62st_{ALICE_KEY[4:]}&{token}&n=6", []),
        (f"/orders?{token}&n=7", [("Authorization", f"Bearer {CAROL_JWT}"), ("X-API-Key", BOB_KEY)]),
    ]
    for path, headers in cases:
        assert get(shop, path, *headers).status == 200, path
    seen = {r.target.rpartition("&n=")[2]: r for r in upstream.records(token)}
    assert sorted(seen) == ["1", "2", "3", "4", "5", "6", "7"]
    for n, rec in seen.items():
        received = rec.target + "".join(f"{k}: {v}\n" for k, v in rec.headers)
        assert "bst_" not in received and "%62st_" not in received, (n, received)
    assert seen["1"].header("x-api-key") is None and seen["1"].header("x-other") == "kept"
    assert seen["2"].header("authorization") is None
    assert seen["3"].header_all("cookie") == ["theme=dark; lang=en"]
    assert seen["4"].header("cookie") is None
    assert seen["5"].target == f"/search-open?a=1&{token}&n=5"
    assert seen["6"].target == f"/search-open?{token}&n=6"
    assert seen["7"].header("authorization") == f"Bearer {CAROL_JWT}" and seen["7"].header("x-api-key") is None


def test_a_verifier_that_cannot_answer_fails_closed(shop: Shop, upstream: ScriptedUpstream, token: str) -> None:
    """A token whose verifier answers 503 (its JWKS endpoint down) is refused with 503
    problem+json, recorded with the verifier's reason, never forwarded."""
    resp = get(shop, f"/orders?{token}", ("Authorization", f"Bearer {DOWN_JWT}"))
    doc = assert_problem(resp, 503)
    assert shop.record(doc["request_id"])["decisions"][0]["reason"] == "auth.jwks_unavailable"
    assert not upstream.saw(token)


def test_mutual_tls_alone_keeps_the_load_time_refusal(shop: Shop, upstream: ScriptedUpstream, token: str) -> None:
    """An operation that only takes mutualTLS (which nothing here verifies) keeps the 401
    decided at load, whatever credential comes; one that takes mutualTLS or an API key
    accepts the key."""
    resp = get(shop, f"/cert?{token}", ("X-API-Key", ALICE_KEY))
    doc = assert_problem(resp, 401)
    assert shop.record(doc["request_id"])["reason"] == "auth.unconfigured"
    assert get(shop, f"/cert-or-key?{token}", ("X-API-Key", ALICE_KEY)).status == 200
    assert [r.path for r in upstream.records(token)] == ["/cert-or-key"]


@pytest.mark.parametrize("credential", [None, ("X-API-Key", WRONG_KEY), ("Authorization", f"Bearer {FORGED_JWT}")])
def test_refused_before_a_50_mb_upload_is_read(
    shop: Shop, upstream: ScriptedUpstream, credential: tuple[str, str] | None
) -> None:
    """A client that starts uploading 50 MB right after the head, with no credential, a wrong
    key (answered at once) or a forged JWT (answered through an awaitable), gets the 401
    while it has sent at most a few socket buffers; the gateway read none of the body
    (`bytes_in` 0) and the upstream saw nothing."""
    tag = uuid.uuid4().hex
    # A trusted proxy's (loopback's) X-Request-ID names the access record.
    lines = [f"POST /orders?{tag} HTTP/1.1", "Host: gw.test", f"Content-Length: {UPLOAD}",
             "Content-Type: application/octet-stream", f"X-Request-ID: {tag}"]
    if credential is not None:
        lines.append(f"{credential[0]}: {credential[1]}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    answer, sent = _upload_until_answered(shop.port, head, UPLOAD)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert sent < SOCKET_BUFFERS, f"{sent} body bytes were sent before the answer"
    record = shop.record(tag)
    assert record["status"] == 401 and record["blocked_by"] == "auth" and record["bytes_in"] == 0
    assert not upstream.saw(tag)


def test_refused_before_100_continue(shop: Shop, upstream: ScriptedUpstream, token: str) -> None:
    """With `Expect: 100-continue` and a forged token (checked through an awaitable), the
    first thing the client reads is the 401, never `100 Continue`: it uploads nothing."""
    with keepalive(shop) as conn:  # type: ignore[arg-type]
        conn.send(build("POST", f"/orders?{token}", [("Content-Length", "5000000"), ("Expect", "100-continue"),
                                                     ("Authorization", f"Bearer {FORGED_JWT}")]))
        resp = conn.read_response("POST", skip_informational=False)
        assert_problem(resp, 401)
    assert not upstream.saw(token)


def test_a_refused_small_body_is_dropped_and_the_connection_goes_on(
    shop: Shop, upstream: ScriptedUpstream, token: str
) -> None:
    """After a 401 on a request with a small body, the next request on the same connection
    is framed right and served."""
    with keepalive(shop) as conn:  # type: ignore[arg-type]
        conn.send(build("POST", f"/orders?{token}", [("Content-Type", "application/octet-stream")], b"abc"))
        assert_problem(conn.read_response("POST"), 401, closes=False)
        conn.send(build("GET", f"/orders?{token}", [("X-API-Key", ALICE_KEY)]))
        assert conn.read_response().status == 200
    assert [r.method for r in upstream.records(token)] == ["GET"]


# -- lockout ------------------------------------------------------------------------------


class ManualClock(Clock):
    """Time that moves only when the test says so (the memory backend expires by it too)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now


LOCKOUT = {"enabled": True, "max_failures_per_ip": 3, "max_failures_per_credential": 4,
           "window": 300, "backoff": 60, "max_backoff": 600}


@pytest.fixture
def locking(upstream: ScriptedUpstream, tmp_path: Path) -> Iterator[tuple[Shop, ManualClock]]:
    keys, tokens, clock = KeyTable(), TokenTable(), ManualClock()
    config = shop_config(upstream, {"auth": {"lockout": LOCKOUT}})
    with InProcessGateway(
        config, tmp_path, None, adjust=with_verifiers(Verifiers(api_key=keys, jwt=tokens)), clock=clock,
        files={"shop.yaml": OPENAPI},
    ) as gw:
        yield Shop(gw, keys, tokens), clock


def from_ip(shop: Shop, ip: str, path: str, *headers: tuple[str, str]) -> Any:
    return get(shop, path, ("X-Forwarded-For", ip), *headers)


def test_failures_from_one_address_lock_it_out_with_growing_back_off(
    locking: tuple[Shop, ManualClock], upstream: ScriptedUpstream, token: str
) -> None:
    """The third failed authentication from an address within the window locks it out: 429
    `auth.locked` with Retry-After, for every request from it, even with a right key (which
    is not even checked), while the same key from another address passes. Once the lockout
    is over, three more failures lock it out again for twice as long."""
    shop, clock = locking
    path = f"/orders?{token}"
    for i in range(2):
        assert_problem(from_ip(shop, "198.51.100.7", path, ("X-API-Key", unknown_key(i))), 401)
    tripped = from_ip(shop, "198.51.100.7", path, ("X-API-Key", unknown_key(2)))
    doc = assert_problem(tripped, 429)
    assert tripped.header("retry-after") == "60"
    assert shop.record(doc["request_id"])["decisions"][0]["reason"] == "auth.locked"
    seen = len(shop.keys.seen)
    locked = from_ip(shop, "198.51.100.7", path, ("X-API-Key", ALICE_KEY))
    assert_problem(locked, 429)
    assert len(shop.keys.seen) == seen  # refused before any verifier ran
    assert from_ip(shop, "203.0.113.9", path, ("X-API-Key", ALICE_KEY)).status == 200
    clock.now += 61
    assert from_ip(shop, "198.51.100.7", path, ("X-API-Key", ALICE_KEY)).status == 200
    for i in range(3, 5):
        assert_problem(from_ip(shop, "198.51.100.7", path, ("X-API-Key", unknown_key(i))), 401)
    again = from_ip(shop, "198.51.100.7", path, ("X-API-Key", unknown_key(5)))
    assert_problem(again, 429)
    assert again.header("retry-after") == "120"
    assert len(upstream.records(token)) == 2


def test_a_locked_out_credential_never_shuts_its_owner_out(
    locking: tuple[Shop, ManualClock], upstream: ScriptedUpstream, token: str
) -> None:
    """Failures naming Alice's key id from many addresses lock that id out: further wrong
    tries with it get 429, from any address; Alice's right key, from an address that did
    not fail, still passes. A missing credential or a missing scope is never counted."""
    shop, _ = locking
    path = f"/orders?{token}"
    for i in range(4):
        resp = from_ip(shop, f"192.0.2.{i + 1}", path, ("X-API-Key", WRONG_KEY))
        assert resp.status == (429 if i == 3 else 401)
    assert_problem(from_ip(shop, "192.0.2.50", path, ("X-API-Key", WRONG_KEY)), 429)
    assert from_ip(shop, "192.0.2.51", path, ("X-API-Key", ALICE_KEY)).status == 200
    for _ in range(5):
        assert_problem(from_ip(shop, "192.0.2.60", path), 401)
        assert_problem(from_ip(shop, "192.0.2.60", f"/reports?{token}", ("X-API-Key", ALICE_KEY)), 403)
    assert from_ip(shop, "192.0.2.60", path, ("X-API-Key", ALICE_KEY)).status == 200
    assert len(upstream.records(token)) == 2


def test_a_credential_that_verified_is_never_counted(
    locking: tuple[Shop, ManualClock], upstream: ScriptedUpstream, token: str
) -> None:
    """On an operation that requires a key and a token together, a right key beside a forged
    token fails, but only the failing credential counts: Alice's key id is never locked out
    by failures it took no part in."""
    shop, _ = locking
    for i in range(6):
        resp = from_ip(shop, f"192.0.2.{100 + i}", f"/both?{token}", ("X-API-Key", ALICE_KEY),
                       ("Authorization", f"Bearer {FORGED_JWT}"))
        assert_problem(resp, 401)
    assert_problem(from_ip(shop, "192.0.2.120", f"/orders?{token}", ("X-API-Key", WRONG_KEY)), 401)
    assert not upstream.saw(token)
