"""Loading verification keys: each JWK/PEM form becomes a key of one family that verifies
only its own algorithms, and every unusable key is refused with a message saying why."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from bastion.stages.auth.jwt.keys import (
    KeySet,
    UnusableKey,
    b64url_decode,
    hmac_key,
    load_jwk,
    load_pem,
)

from .idp import SigningKey, b64url


def certificate_pem(key: SigningKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.private.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key.private, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("alg", "family", "accepted"),
    [("RS256", "RSA", {"RS256", "PS256"}), ("ES256", "EC-P256", {"ES256"}), ("EdDSA", "Ed25519", {"EdDSA"})],
)
def test_families_accept_their_own_algorithms_only(alg: str, family: str, accepted: set[str]) -> None:
    """A PEM key belongs to its family and accepts exactly that family's algorithms; the same
    key as a JWK with `alg` accepts that one algorithm only."""
    key = SigningKey.generate(alg)
    loaded = load_pem(key.public_pem())
    assert loaded.family == family
    assert {a for a in ("RS256", "PS256", "ES256", "EdDSA", "HS256") if loaded.accepts(a)} == accepted
    bound = load_jwk(key.jwk())
    assert {a for a in ("RS256", "PS256", "ES256", "EdDSA", "HS256") if bound.accepts(a)} == {alg}


def test_signatures_verify_and_wrong_ones_do_not() -> None:
    """Each family verifies a real signature over the signing input and refuses the same
    signature over other bytes, a truncated ES256 signature and an empty one."""
    for alg in ("RS256", "PS256", "ES256", "EdDSA"):
        key = SigningKey.generate(alg)
        head, body, sig = key.sign({"a": 1}).split(".")
        loaded = load_pem(key.public_pem())
        data, signature = f"{head}.{body}".encode(), b64url_decode(sig)
        assert loaded.verify(alg, signature, data), alg
        assert not loaded.verify(alg, signature, data + b"x"), alg
        assert not loaded.verify(alg, signature[:-1], data), alg
        assert not loaded.verify(alg, b"", data), alg
    secret = hmac_key(b"k" * 32)
    assert not secret.verify("HS256", b"\x00" * 32, b"data")


def test_certificate_pem_is_a_key() -> None:
    """An X.509 certificate in PEM gives its public key."""
    key = SigningKey.generate("ES256")
    assert load_pem(certificate_pem(key)).family == "EC-P256"


def _ec_jwk(**changes: Any) -> dict[str, Any]:
    jwk = SigningKey.generate("ES256").jwk()
    jwk.update(changes)
    return {k: v for k, v in jwk.items() if v is not None}


@pytest.mark.parametrize(
    ("jwk", "message"),
    [
        (_ec_jwk(x=b64url(b"\x01" * 32), y=b64url(b"\x02" * 32)), "not a valid public key"),
        (_ec_jwk(x=b64url(b"\x01" * 31)), "member 'x' has 31 bytes, expected 32"),
        (_ec_jwk(x="!!"), "member 'x' is not base64url"),
        (_ec_jwk(crv="P-384"), "only P-256 (ES256) is supported"),
        (_ec_jwk(alg="RS256"), "alg 'RS256' is not an algorithm of its EC-P256 key"),
        (_ec_jwk(use="enc"), "use is 'enc', not 'sig'"),
        (_ec_jwk(key_ops=["encrypt"]), "key_ops does not allow 'verify'"),
        (_ec_jwk(d="AAAA"), "is a private key"),
        (_ec_jwk(kid=7), "kid must be a string"),
        ({"kty": "oct", "k": "c2VjcmV0"}, "a symmetric key"),
        ({"kty": "OKP", "crv": "X25519", "x": b64url(b"\x00" * 32)}, "only Ed25519 (EdDSA) is supported"),
        ({"kty": "RSA", "n": b64url(b"\xff" * 128), "e": "AQAB"}, "an RSA key of 1024 bits"),
        ({"kty": "RSA", "e": "AQAB"}, "member 'n' is missing"),
        ({"kty": "DSA"}, "kty 'DSA'; expected RSA, EC or OKP"),
    ],
    ids=["off-curve", "short-x", "not-base64", "p384", "alg-mismatch", "use-enc", "key-ops", "private",
         "kid-number", "oct", "x25519", "rsa-1024", "rsa-no-n", "dsa"],
)
def test_unusable_jwks_are_refused(jwk: dict[str, Any], message: str) -> None:
    """Each unusable JWK raises UnusableKey naming the problem (never the key material)."""
    with pytest.raises(UnusableKey) as info:
        load_jwk(jwk)
    assert message in str(info.value)


def test_short_hmac_secret_is_refused() -> None:
    """An HS256 secret of 31 bytes is refused; 32 are accepted."""
    with pytest.raises(UnusableKey, match="at least 32 bytes long, this one has 31"):
        hmac_key(b"s" * 31)
    assert hmac_key(b"s" * 32).accepts("HS256")


def test_key_set_lookup() -> None:
    """By kid first; without a match, the single key of the algorithm's family that has no
    kid (or, for a token without kid, the single key of that family); ambiguity finds nothing."""
    a, b = SigningKey.generate("ES256"), SigningKey.generate("ES256")
    pem = load_pem(SigningKey.generate("EdDSA").public_pem())
    keys = KeySet([load_jwk(a.jwk()), load_jwk(b.jwk()), pem])
    assert keys.find(a.kid, "ES256") is keys.by_kid[a.kid]
    assert keys.find(None, "ES256") is None  # two EC keys: which one is not guessed
    assert keys.find(None, "EdDSA") is pem
    assert keys.find("unknown", "EdDSA") is pem  # the issuer's only key without a kid
    assert keys.find("unknown", "ES256") is None


@pytest.mark.parametrize("text", ["a+b", "a/b", "YQ==", "a b", "é"])
def test_b64url_is_strict(text: str) -> None:
    """Standard-alphabet characters, padding, spaces and non-ASCII are not base64url."""
    with pytest.raises(ValueError):
        b64url_decode(text)
