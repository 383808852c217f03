"""JwtVerifier against real keys: every algorithm accepted, every forgery and every invalid
token refused with its reason, and the verified-token cache honouring expiry and revocation.

Keys are generated here, tokens signed with PyJWT (or by hand for forgeries), the JWKS served
by a real HTTP server on loopback; the verifier runs its real start/verify/close life."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from bastion.services import Services
from bastion.stages.auth.jwt.config import JwtSettings
from bastion.stages.auth.jwt.verify import CACHE_KEY_MAX_CHARS, JwtVerifier
from bastion.stages.auth.methods import AuthFailure, Verdict
from bastion.stages.auth.revocations import publish_revocation
from bastion.types import Principal

from .idp import AUDIENCE, ISSUER, MovableClock, Provider, SigningKey, b64url, claims, hs256, serve, services, unsigned

ALGS = ("RS256", "PS256", "ES256", "EdDSA")
SECRET = b"0123456789abcdef0123456789abcdef-hs"


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {alg: SigningKey.generate(alg) for alg in ALGS}


@pytest.fixture
def provider(keys: dict[str, SigningKey]) -> Provider:
    return Provider(keys=list(keys.values()))


@pytest.fixture
def jwks_url(provider: Provider) -> Iterator[str]:
    with serve(provider) as url:
        yield url + "/.well-known/jwks.json"


@dataclass(frozen=True)
class In:
    """A time ``seconds`` from when the test runs."""

    seconds: int


def settings(jwks_url: str | None = None, **issuer: Any) -> JwtSettings:
    entry: dict[str, Any] = {"issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": list(ALGS)}
    if jwks_url is not None:
        entry["jwks_url"] = jwks_url
    entry.update(issuer)
    return JwtSettings.model_validate({"issuers": [entry], "leeway": 30})


def settle(verdict: Verdict | Awaitable[Verdict]) -> Verdict:
    """The verdict of a synchronous answer (fails the test if it is an awaitable)."""
    assert isinstance(verdict, (Principal, AuthFailure)), f"expected an immediate verdict, got {verdict!r}"
    return verdict


def run(verifier: JwtVerifier, scenario: Any, svc: Services | None = None) -> Any:
    async def main() -> Any:
        s = svc or services()
        await verifier.start(s)
        try:
            return await scenario(s)
        finally:
            await verifier.close()
            await s.close()

    return asyncio.run(main())


def reason(verdict: Verdict) -> str:
    assert isinstance(verdict, AuthFailure), f"expected a refusal, got {verdict!r}"
    return verdict.reason


def test_every_algorithm_verifies_and_maps_claims(keys: dict[str, SigningKey], jwks_url: str) -> None:
    """A token of each algorithm (RS256, PS256, ES256, EdDSA), signed with a key of the JWKS,
    gives a principal at once: consumer from sub, scopes from `scope`, roles from `roles`,
    credential id from jti."""
    verifier = JwtVerifier.from_settings(settings(jwks_url))

    async def scenario(_: Services) -> None:
        for alg, key in keys.items():
            c = claims()
            principal = settle(verifier.verify(key.sign(c)))
            assert isinstance(principal, Principal), alg
            assert principal.consumer_id == "alice"
            assert principal.scopes == {"books:read", "books:write"}
            assert principal.roles == {"user"}
            assert principal.credential_id == c["jti"]
            assert principal.claims["aud"] == AUDIENCE

    run(verifier, scenario)


def test_claim_mapping_scp_list_custom_consumer_and_dotted_roles(keys: dict[str, SigningKey], jwks_url: str) -> None:
    """Scopes fall back to `scp` (a list) without `scope`; consumer_claim and a dotted
    roles_claim (Keycloak's realm_access.roles) are honoured."""
    verifier = JwtVerifier.from_settings(
        settings(jwks_url, consumer_claim="client_id", roles_claim="realm_access.roles")
    )

    async def scenario(_: Services) -> None:
        token = keys["ES256"].sign(claims(scope=None, scp=["a", "b"], client_id="svc-1",
                                          realm_access={"roles": ["admin"]}))
        principal = settle(verifier.verify(token))
        assert isinstance(principal, Principal)
        assert (principal.consumer_id, principal.scopes, principal.roles) == ("svc-1", {"a", "b"}, {"admin"})
        no_consumer = keys["ES256"].sign(claims())  # no client_id claim
        assert reason(settle(verifier.verify(no_consumer))) == "auth.claims"

    run(verifier, scenario)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"exp": In(-31)}, "auth.token_expired"),
        ({"exp": None}, "auth.claims"),
        ({"exp": "tomorrow"}, "auth.claims"),
        ({"nbf": In(120)}, "auth.token_not_yet_valid"),
        ({"iat": In(120)}, "auth.token_not_yet_valid"),
        ({"iss": "https://evil.test"}, "auth.issuer"),
        ({"iss": None}, "auth.issuer"),
        ({"aud": "other-api"}, "auth.audience"),
        ({"aud": ["other-api", "third"]}, "auth.audience"),
        ({"aud": None}, "auth.audience"),
        ({"aud": [{"x": 1}, [AUDIENCE]]}, "auth.audience"),
        ({"sub": None}, "auth.claims"),
    ],
    ids=["expired", "no-exp", "exp-not-number", "nbf-future", "iat-future", "wrong-iss", "no-iss",
         "wrong-aud", "wrong-aud-list", "no-aud", "aud-objects", "no-sub"],
)
def test_invalid_claims_are_refused(
    keys: dict[str, SigningKey], jwks_url: str, changes: dict[str, Any], expected: str
) -> None:
    """A correctly signed token whose claims do not hold is refused with the claim's reason
    (401); expiry and not-before allow the 30 s leeway and no more."""
    verifier = JwtVerifier.from_settings(settings(jwks_url))

    async def scenario(_: Services) -> None:
        now = int(time.time())  # at run time: parameters are made when tests are collected
        resolved = {k: now + v.seconds if isinstance(v, In) else v for k, v in changes.items()}
        verdict = settle(verifier.verify(keys["RS256"].sign(claims(**resolved))))
        assert reason(verdict) == expected
        assert isinstance(verdict, AuthFailure) and verdict.status == 401

    run(verifier, scenario)


def test_leeway_accepts_small_skew(keys: dict[str, SigningKey], jwks_url: str) -> None:
    """Within the leeway, a just-expired token and a token from a clock slightly ahead pass;
    the audience may be one of a list."""
    verifier = JwtVerifier.from_settings(settings(jwks_url))
    now = int(time.time())

    async def scenario(_: Services) -> None:
        for c in (claims(exp=now - 20), claims(nbf=now + 20, iat=now + 20), claims(aud=["x", AUDIENCE])):
            assert isinstance(settle(verifier.verify(keys["EdDSA"].sign(c))), Principal)

    run(verifier, scenario)


def test_forgeries_are_refused(keys: dict[str, SigningKey], jwks_url: str) -> None:
    """alg none, a tampered payload, a signature by a key not in the JWKS under a known kid,
    an RS256 kid used with HS256 (the public key as HMAC secret), an ES256 signature under
    the RSA kid, and PS256 with a key the JWKS binds to RS256 all fail; none is accepted."""
    verifier = JwtVerifier.from_settings(settings(jwks_url))
    rsa_key = keys["RS256"]

    async def scenario(_: Services) -> None:
        assert reason(settle(verifier.verify(unsigned(claims())))) == "auth.algorithm"
        assert reason(settle(verifier.verify(unsigned(claims(), alg="None")))) == "auth.algorithm"

        head, _body, sig = rsa_key.sign(claims(sub="alice")).split(".")
        forged_body = b64url(json.dumps(claims(sub="admin")).encode())
        assert reason(settle(verifier.verify(f"{head}.{forged_body}.{sig}"))) == "auth.signature"

        impostor = SigningKey("RS256", rsa_key.kid, SigningKey.generate("RS256").private)
        assert reason(settle(verifier.verify(impostor.sign(claims())))) == "auth.signature"

        swapped = hs256(claims(), rsa_key.public_pem().encode(), {"kid": rsa_key.kid})
        assert reason(settle(verifier.verify(swapped))) == "auth.algorithm"

        # ES256 signature under an RSA kid: the key's family decides, not the header.
        es_as_rs = keys["ES256"].sign(claims(), kid=rsa_key.kid)
        assert reason(settle(verifier.verify(es_as_rs))) == "auth.algorithm"

        # The JWKS binds the RSA key to RS256 (its `alg`): a PS256 signature by the very same
        # private key is still refused.
        ps_by_rs_key = SigningKey("PS256", rsa_key.kid, rsa_key.private).sign(claims())
        assert reason(settle(verifier.verify(ps_by_rs_key))) == "auth.algorithm"

    run(verifier, scenario)


def test_rs_to_hs_swap_fails_even_where_hs256_is_allowed(keys: dict[str, SigningKey], tmp_path: Path) -> None:
    """With static RSA keys and HS256 allowed (a configured secret), a token HMAC-signed with
    the RSA public key is refused: under the RSA kid for the algorithm, without a kid for the
    signature (only the configured secret is an HMAC key). A token signed with the real
    secret passes."""
    secret = tmp_path / "hs.secret"
    secret.write_bytes(SECRET + b"\n")
    rsa_key = keys["RS256"]
    verifier = JwtVerifier.from_settings(
        settings(None, keys=[rsa_key.jwk()], algorithms=["RS256", "HS256"], secret_file=str(secret))
    )

    async def scenario(_: Services) -> None:
        pem = rsa_key.public_pem().encode()
        assert reason(settle(verifier.verify(hs256(claims(), pem, {"kid": rsa_key.kid})))) == "auth.algorithm"
        assert reason(settle(verifier.verify(hs256(claims(), pem)))) == "auth.signature"
        assert isinstance(settle(verifier.verify(hs256(claims(), SECRET))), Principal)
        assert isinstance(settle(verifier.verify(rsa_key.sign(claims()))), Principal)

    run(verifier, scenario)


def test_algorithm_not_in_the_issuers_list(keys: dict[str, SigningKey], jwks_url: str) -> None:
    """An issuer allowing only ES256 refuses an RS256 token signed by a key of its own JWKS."""
    verifier = JwtVerifier.from_settings(settings(jwks_url, algorithms=["ES256"]))

    async def scenario(_: Services) -> None:
        assert reason(settle(verifier.verify(keys["RS256"].sign(claims())))) == "auth.algorithm"
        assert isinstance(settle(verifier.verify(keys["ES256"].sign(claims()))), Principal)

    run(verifier, scenario)


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d", "!!!.e30.", "e30.e30.", "W10.e30.", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.",
     "eyJhbGciOiJSUzI1NiIsImNyaXQiOlsiZXhwIl19.e30.", "e30=.e30.", "x" * 20000],
    ids=["empty", "one-part", "two-parts", "four-parts", "not-base64", "no-alg", "header-not-object",
         "payload-not-json", "crit", "padded", "huge"],
)
def test_malformed_tokens(token: str) -> None:
    """Anything that is not three strict base64url JSON parts (or asks for a critical extension)
    is malformed, before any key is looked at."""
    verifier = JwtVerifier.from_settings(settings(None, keys=[SigningKey.generate("EdDSA").public_pem()],
                                                  algorithms=["EdDSA"]))

    async def scenario(_: Services) -> None:
        assert reason(settle(verifier.verify(token))) == "auth.malformed"

    run(verifier, scenario)


def test_cache_hit_then_expiry(keys: dict[str, SigningKey], jwks_url: str) -> None:
    """A verified token is answered from the cache with the same principal object; once the
    clock passes exp + leeway, it is refused as expired (the cache does not outlive it)."""
    clock = MovableClock()
    verifier = JwtVerifier.from_settings(settings(jwks_url))
    token = keys["ES256"].sign(claims(exp=int(time.time()) + 60))

    async def scenario(_: Services) -> None:
        first = settle(verifier.verify(token))
        assert isinstance(first, Principal)
        assert settle(verifier.verify(token)) is first
        clock.offset = 91  # past exp (60) + leeway (30)
        assert reason(settle(verifier.verify(token))) == "auth.token_expired"

    run(verifier, scenario, services(clock=clock))


def test_the_cache_remembers_a_token_under_itself_and_a_long_one_under_its_hash(
    keys: dict[str, SigningKey], jwks_url: str
) -> None:
    """A token of up to CACHE_KEY_MAX_CHARS characters is remembered under itself, a longer
    one under its BLAKE2s (so the cache's memory is bounded by the limit, not by the longest
    token): both are answered from the cache with the same principal object until they
    expire, and a token one character away from a cached one is verified anew (refused)."""
    clock = MovableClock()
    verifier = JwtVerifier.from_settings(settings(jwks_url))
    exp = int(time.time()) + 60
    short = keys["ES256"].sign(claims(exp=exp))
    long = keys["ES256"].sign(claims(exp=exp, padding="x" * CACHE_KEY_MAX_CHARS))
    assert len(short) <= CACHE_KEY_MAX_CHARS < len(long)

    async def scenario(_: Services) -> None:
        first = {token: settle(verifier.verify(token)) for token in (short, long)}
        assert all(isinstance(p, Principal) for p in first.values())
        assert set(verifier._cache._entries) == {short, hashlib.blake2s(long.encode()).digest()}
        for token in (short, long):
            assert settle(verifier.verify(token)) is first[token]
            forged = token[:-10] + ("A" if token[-10] != "A" else "B") + token[-9:]  # in the signature
            assert reason(settle(verifier.verify(forged))) == "auth.signature"
        clock.offset = 91  # past exp (60) + leeway (30)
        for token in (short, long):
            assert reason(settle(verifier.verify(token))) == "auth.token_expired"
        assert len(verifier._cache) == 0

    run(verifier, scenario, services(clock=clock))


def test_revoked_jti_is_refused_on_cache_hits(keys: dict[str, SigningKey], jwks_url: str) -> None:
    """A token verified (and cached) before its jti is revoked is refused on its next use;
    revoking another jti changes nothing for it; a token without a jti does not depend on
    the revocation set."""
    verifier = JwtVerifier.from_settings(settings(jwks_url))
    c = claims()
    token = keys["RS256"].sign(c)
    other = keys["RS256"].sign(claims())
    no_jti = keys["RS256"].sign(claims(jti=None))

    async def scenario(svc: Services) -> None:
        assert isinstance(settle(verifier.verify(token)), Principal)
        assert isinstance(settle(verifier.verify(other)), Principal)
        await publish_revocation(svc.state, c["jti"], c["exp"], svc.clock.wall())
        for _ in range(100):  # the subscription delivers on the loop
            await asyncio.sleep(0.01)
            if isinstance(verifier.verify(token), AuthFailure):
                break
        assert reason(settle(verifier.verify(token))) == "auth.revoked"
        assert isinstance(settle(verifier.verify(other)), Principal)
        assert isinstance(settle(verifier.verify(no_jti)), Principal)

    run(verifier, scenario)


def test_revocations_recorded_before_start_are_loaded(keys: dict[str, SigningKey], jwks_url: str) -> None:
    """A worker that starts after a revocation was published loads it from the state backend:
    the revoked token is refused on first sight, uncached."""
    verifier = JwtVerifier.from_settings(settings(jwks_url))
    c = claims()
    svc = services()

    async def scenario(s: Services) -> None:
        assert reason(settle(verifier.verify(keys["PS256"].sign(c)))) == "auth.revoked"

    async def main() -> None:
        await publish_revocation(svc.state, c["jti"], c["exp"], svc.clock.wall())
        await verifier.start(svc)
        try:
            await scenario(svc)
        finally:
            await verifier.close()
            await svc.close()

    asyncio.run(main())


def test_static_keys_pem_and_jwk(keys: dict[str, SigningKey]) -> None:
    """Static keys verify without any endpoint: a PEM (no kid, picked by family) and a JWK
    (picked by kid)."""
    verifier = JwtVerifier.from_settings(
        settings(None, keys=[keys["EdDSA"].public_pem(), keys["ES256"].jwk()], algorithms=["EdDSA", "ES256"])
    )

    async def scenario(_: Services) -> None:
        assert isinstance(settle(verifier.verify(keys["EdDSA"].sign(claims(), kid=None))), Principal)
        assert isinstance(settle(verifier.verify(keys["ES256"].sign(claims()))), Principal)
        assert reason(settle(verifier.verify(SigningKey.generate("ES256").sign(claims())))) == "auth.kid_unknown"

    run(verifier, scenario)


def test_two_issuers_are_kept_apart(keys: dict[str, SigningKey]) -> None:
    """A token claiming issuer B but signed with issuer A's key is refused: each issuer's
    tokens are checked with that issuer's keys only."""
    a, b = keys["ES256"], SigningKey.generate("ES256")
    verifier = JwtVerifier.from_settings(JwtSettings.model_validate({"issuers": [
        {"issuer": "https://a.test", "keys": [a.jwk()], "audiences": [AUDIENCE], "algorithms": ["ES256"]},
        {"issuer": "https://b.test", "keys": [b.jwk()], "audiences": [AUDIENCE], "algorithms": ["ES256"]},
    ]}))

    async def scenario(_: Services) -> None:
        assert isinstance(settle(verifier.verify(a.sign(claims(iss="https://a.test")))), Principal)
        assert isinstance(settle(verifier.verify(b.sign(claims(iss="https://b.test")))), Principal)
        assert reason(settle(verifier.verify(a.sign(claims(iss="https://b.test"), kid=b.kid)))) == "auth.signature"
        assert reason(settle(verifier.verify(a.sign(claims(iss="https://b.test"))))) == "auth.kid_unknown"

    run(verifier, scenario)


def test_padding_variants_of_a_valid_token_are_refused(keys: dict[str, SigningKey], jwks_url: str) -> None:
    """A valid token re-spelt with base64 padding or standard-alphabet characters is refused:
    one token has one spelling (the cache and revocation work on exact tokens)."""
    verifier = JwtVerifier.from_settings(settings(jwks_url))
    token = keys["EdDSA"].sign(claims())
    head, body, sig = token.split(".")
    std_sig = base64.b64encode(base64.urlsafe_b64decode(sig + "==")).decode()

    async def scenario(_: Services) -> None:
        assert isinstance(settle(verifier.verify(token)), Principal)
        assert reason(settle(verifier.verify(f"{head}.{body}.{std_sig}"))) in ("auth.malformed", "auth.signature")
        assert reason(settle(verifier.verify(f"{head}.{body}.{sig}=="))) == "auth.malformed"

    run(verifier, scenario)


def test_a_jwks_issuer_before_start_fails_closed(keys: dict[str, SigningKey], jwks_url: str) -> None:
    """A verifier that was never started has no JWKS: its tokens get 503, not 401 or a pass."""
    verifier = JwtVerifier.from_settings(settings(jwks_url))
    refused = settle(verifier.verify(keys["ES256"].sign(claims())))
    assert isinstance(refused, AuthFailure) and (refused.reason, refused.status) == ("auth.jwks_unavailable", 503)



_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_CLAIM_NAMES = st.sampled_from(["iss", "aud", "exp", "nbf", "iat", "sub", "jti", "scope", "scp", "roles", "kid",
                                "alg", "crit", "x"])
_OBJECTS = st.dictionaries(_CLAIM_NAMES, _JSON | st.just(ISSUER) | st.just(AUDIENCE) | st.sampled_from(ALGS),
                           max_size=8)


@settings_(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=_OBJECTS, payload=_OBJECTS, signature=st.binary(max_size=300))
def test_arbitrary_tokens_never_raise_and_never_pass(
    keys: dict[str, SigningKey], header: dict[str, Any], payload: dict[str, Any], signature: bytes
) -> None:
    """Any header and payload JSON (claims of every type, the right issuer and audience
    included) with any signature bytes gives a refusal: never an exception, never a
    principal. Static keys, so no network is involved."""
    verifier = JwtVerifier.from_settings(settings(None, keys=[k.jwk() for k in keys.values()]))
    token = ".".join((b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode()), b64url(signature)))
    verdict = settle(verifier.verify(token))
    assert isinstance(verdict, AuthFailure)


def test_a_certificate_bound_token_names_its_certificate(keys: dict[str, SigningKey]) -> None:
    """RFC 8705: a token with `cnf: {"x5t#S256": ...}` gives a principal naming that
    certificate's SHA-256 (hex, as the proxy computes it; the stage checks the connection);
    an unbound token names none; a `cnf` this gateway cannot check (another confirmation
    method, a thumbprint that is not base64url of 32 bytes) is refused, never taken as a
    bearer token."""
    verifier = JwtVerifier.from_settings(settings(None, keys=[keys["ES256"].public_pem()], algorithms=["ES256"]))
    digest = bytes(range(32))

    async def scenario(_: Services) -> None:
        bound = settle(verifier.verify(keys["ES256"].sign(claims(cnf={"x5t#S256": b64url(digest)}), kid=None)))
        assert isinstance(bound, Principal) and bound.bound_certificate == digest.hex()
        plain = settle(verifier.verify(keys["ES256"].sign(claims(), kid=None)))
        assert isinstance(plain, Principal) and plain.bound_certificate == ""
        for cnf in ({"jkt": b64url(digest)}, {"x5t#S256": b64url(digest[:20])}, {"x5t#S256": "not base64!"},
                    {"x5t#S256": b64url(digest), "jkt": "x"}, "x5t"):
            refused = settle(verifier.verify(keys["ES256"].sign(claims(cnf=cnf), kid=None)))
            assert reason(refused) == "auth.claims", cnf

    run(verifier, scenario)


def test_routes_with_equal_settings_share_one_verified_token_cache(
    keys: dict[str, SigningKey], tmp_path: Path
) -> None:
    """Two verifiers built from equal settings (two routes) and started in one worker share
    one cache: a token verified by the first is a hit on the second (the same principal
    object, no signature check). Settings that differ (an audience), or equal settings whose
    HS256 secret file now holds another secret, get caches of their own, so a token verified
    under the old secret is refused under the new one."""
    secret = tmp_path / "hs.secret"
    secret.write_bytes(SECRET)
    es = keys["ES256"]
    common = {"keys": [es.jwk()], "algorithms": ["ES256", "HS256"], "secret_file": str(secret)}
    first = JwtVerifier.from_settings(settings(None, **common))
    second = JwtVerifier.from_settings(settings(None, **common))
    other_audience = JwtVerifier.from_settings(settings(None, **common, audiences=[AUDIENCE, "other"]))
    secret.write_bytes(b"another-secret-of-at-least-32-bytes!!")
    rotated = JwtVerifier.from_settings(settings(None, **common))
    assert first.cache_key == second.cache_key
    assert len({first.cache_key, other_audience.cache_key, rotated.cache_key}) == 3
    token, hs_token = es.sign(claims()), hs256(claims(), SECRET)

    async def main() -> None:
        svc = services()
        for verifier in (first, second, other_audience, rotated):
            await verifier.start(svc)
        try:
            verified = settle(first.verify(token))
            assert isinstance(verified, Principal)
            assert settle(second.verify(token)) is verified
            assert settle(other_audience.verify(token)) is not verified
            assert isinstance(settle(first.verify(hs_token)), Principal)
            assert reason(settle(rotated.verify(hs_token))) == "auth.signature"
        finally:
            for verifier in (first, second, other_audience, rotated):
                await verifier.close()
            await svc.close()

    asyncio.run(main())
