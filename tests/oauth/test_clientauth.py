"""Client credentials as presented (RFC 6749 2.3), client JWKS registration and assertion
checks (RFC 7523), with real keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from bastion.oauth.assertion import ASSERTION_TYPE, BadJWKS, check_client_jwks, verify_assertion
from bastion.oauth.clientauth import Malformed, Presented, presented

TOKEN_URL = "https://auth.example/oauth/token"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_credentials_are_form_decoded() -> None:
    """RFC 6749 2.3.1: id and secret are form-urlencoded before Basic encoding."""
    assert presented(basic("svc%2Eone", "a%2Bb+c"), {}) == Presented("client_secret_basic", "svc.one", secret="a+b c")


@pytest.mark.parametrize(
    ("authorization", "form", "error"),
    [
        (None, {}, "invalid_client"),
        (basic("a", "s"), {"client_id": "a", "client_secret": "s"}, "invalid_request"),
        (None, {"client_id": "b", "client_secret": "s", "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": "x.y.z"}, "invalid_client"),
        (basic("a", "s"), {"client_id": "b"}, "invalid_request"),
        ("Bearer abc", {}, "invalid_client"),
        ("Basic !!!", {}, "invalid_request"),
        (None, {"client_secret": "s"}, "invalid_request"),
        (None, {"client_assertion_type": "urn:other", "client_assertion": "x"}, "invalid_request"),
        (basic("bad id/with slash", "s"), {}, "invalid_client"),
    ],
)
def test_unusable_credentials(authorization: str | None, form: dict[str, str], error: str) -> None:
    """None presented, two methods at once, a client_id that contradicts the credentials, a
    scheme other than Basic, broken base64, a secret without id, a foreign assertion type,
    an id that is not one Bastion makes: each refused with the RFC's error."""
    found = presented(authorization, form)
    assert isinstance(found, Malformed) and found.error == error


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str | None = "k1") -> dict[str, Any]:
    jwk: dict[str, Any] = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    if kid is not None:
        jwk["kid"] = kid
    return jwk


@pytest.mark.parametrize(
    ("jwks", "message"),
    [
        ({"keys": [ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()), as_dict=True)]}, "private"),
        ({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "symmetric"),
        ({"keys": [RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 1024).public_key(), as_dict=True)]}, "2048"),
        ({"keys": [ec_jwk(ec.generate_private_key(ec.SECP256R1()), None),
                   ec_jwk(ec.generate_private_key(ec.SECP256R1()), None)]}, "no kid"),
        ({"keys": [ec_jwk(ec.generate_private_key(ec.SECP256R1())),
                   ec_jwk(ec.generate_private_key(ec.SECP256R1()))]}, "twice"),
        ({"keys": []}, "JWK Set"),
    ],
)
def test_client_jwks_refused(jwks: dict[str, Any], message: str) -> None:
    """Private or symmetric key material, short RSA keys, ambiguous or duplicate kids and an
    empty set cannot be registered."""
    with pytest.raises(BadJWKS, match=message):
        check_client_jwks(jwks)


@pytest.fixture(scope="module")
def client_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def signed(key: Any, alg: str = "ES256", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": "svc", "sub": "svc", "aud": TOKEN_URL, "exp": now + 60, "jti": "j1", **overrides}
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": "k1"})


def test_assertion_accepted_and_its_replay_window(client_key: ec.EllipticCurvePrivateKey) -> None:
    """A well-formed assertion verifies, to be remembered until it expires (plus leeway)."""
    jwks = check_client_jwks({"keys": [ec_jwk(client_key)]})
    checked = verify_assertion(signed(client_key), "svc", jwks, (TOKEN_URL,), time.time())
    assert checked is not None and checked.jti == "j1" and 60 < checked.remember_for <= 91


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "https://elsewhere.example/token"},
        {"exp": int(time.time()) + 3600},
        {"exp": int(time.time()) - 120},
        {"sub": "other"},
        {"iss": "other"},
        {"jti": None},
    ],
)
def test_assertion_claims_refused(client_key: ec.EllipticCurvePrivateKey, overrides: dict[str, Any]) -> None:
    """Another audience, a lifetime longer than the replay memory, expired, another subject
    or issuer, or no jti: refused."""
    jwks = check_client_jwks({"keys": [ec_jwk(client_key)]})
    claims = {k: v for k, v in overrides.items() if v is not None}
    token = signed(client_key, **claims)
    if overrides.get("jti", "") is None:
        payload = jwt.decode(token, options={"verify_signature": False})
        payload.pop("jti")
        token = jwt.encode(payload, client_key, algorithm="ES256", headers={"kid": "k1"})
    assert verify_assertion(token, "svc", jwks, (TOKEN_URL,), time.time()) is None


def test_assertion_with_the_public_key_as_hmac_secret_is_refused(client_key: ec.EllipticCurvePrivateKey) -> None:
    """Algorithm confusion: an HS256 assertion keyed with the client's public key (which an
    attacker may know) is refused; an EC key is only ever used with ES256."""
    jwks = check_client_jwks({"keys": [ec_jwk(client_key)]})
    public_pem = client_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    assert verify_assertion(_hs256(public_pem, now), "svc", jwks, (TOKEN_URL,), now) is None


def _hs256(secret: bytes, now: int) -> str:
    """An HS256 JWT built by hand (PyJWT refuses PEM keys as HMAC secrets itself)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = b64(json.dumps({"iss": "svc", "sub": "svc", "aud": TOKEN_URL, "exp": now + 60, "jti": "x"}).encode())
    sig = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"
