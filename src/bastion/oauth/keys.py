"""The authorization server's signing keys: made, stored encrypted, rotated, published.

A key *signs* from its ``created_at`` until ``retire_after`` (``key_rotation.interval_hours``
later), then only *verifies*: it stays in the JWKS until ``not_after``, when the last token
it signed has expired (``token_ttl`` and a leeway later), and is then deleted. Every
instance reads the same keys from the store, so a token signed by one verifies on all.

Private keys are kept in the store as encrypted PKCS#8 PEM, the password derived from the
store's pepper: a copy of the database alone does not let anyone mint tokens.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from bastion.config.secrets import derive

Algorithm = Literal["ES256", "EdDSA"]
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

#: Clock skew tolerated between instances, added to how long a retired key stays published.
LEEWAY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class StoredKey:
    """A row of ``signing_keys``, as the store gives it."""

    kid: str
    algorithm: str
    private_pem: str
    public_jwk: dict[str, Any]
    created_at: datetime
    retire_after: datetime
    not_after: datetime


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A key ready to use: the private key loaded once (never re-parsed per token)."""

    kid: str
    algorithm: Algorithm
    private: PrivateKey
    public: PublicKey
    public_jwk: dict[str, Any]
    created_at: datetime
    retire_after: datetime
    not_after: datetime

    def signs_at(self, now: datetime) -> bool:
        return self.created_at <= now < self.retire_after


def _password(pepper: bytes) -> bytes:
    # A distinct derivation: the pepper itself also keys the secret hashes. The same scheme
    # as the configuration's encrypted values (bastion.config.secrets), another label.
    return derive(pepper, b"bastion oauth signing keys").hex().encode("ascii")


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 thumbprint of a public JWK (its ``kid``)."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("crv", "kty", "x")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode("ascii")


def public_jwk(public: PublicKey, algorithm: Algorithm) -> dict[str, Any]:
    """The JWK clients verify with: its key, ``kid``, ``alg`` and ``use``."""
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk: dict[str, Any] = dict(ECAlgorithm.to_jwk(public, as_dict=True))
    else:
        jwk = dict(OKPAlgorithm.to_jwk(public, as_dict=True))
    jwk = {k: jwk[k] for k in sorted(jwk)}
    jwk.update(kid=thumbprint(jwk), alg=algorithm, use="sig")
    return jwk


def new_key(algorithm: Algorithm, now: datetime, interval: timedelta, token_ttl: timedelta, pepper: bytes) -> StoredKey:
    """A fresh key signing from ``now`` for ``interval``, published ``token_ttl`` longer."""
    private: PrivateKey = (
        ec.generate_private_key(ec.SECP256R1()) if algorithm == "ES256" else ed25519.Ed25519PrivateKey.generate()
    )
    jwk = public_jwk(private.public_key(), algorithm)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(_password(pepper)),
    ).decode("ascii")
    retire = now + interval
    return StoredKey(jwk["kid"], algorithm, pem, jwk, now, retire, retire + token_ttl + LEEWAY)


class UnusableKey(Exception):
    """A stored key cannot be used (wrong pepper, corrupt row, unknown algorithm)."""


def load_key(stored: StoredKey, pepper: bytes) -> SigningKey:
    """Decrypt and load a stored key; :class:`UnusableKey` says why it cannot be used."""
    if stored.algorithm not in ("ES256", "EdDSA"):
        raise UnusableKey(f"signing key {stored.kid}: unknown algorithm {stored.algorithm!r}")
    try:
        private = serialization.load_pem_private_key(stored.private_pem.encode("ascii"), _password(pepper))
    except (ValueError, TypeError) as exc:
        raise UnusableKey(
            f"signing key {stored.kid} cannot be decrypted: was the store's pepper changed? ({exc})"
        ) from None
    algorithm: Algorithm = "ES256" if stored.algorithm == "ES256" else "EdDSA"
    if algorithm == "ES256" and not (
        isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1)
    ):
        raise UnusableKey(f"signing key {stored.kid} is not a P-256 key")
    if algorithm == "EdDSA" and not isinstance(private, ed25519.Ed25519PrivateKey):
        raise UnusableKey(f"signing key {stored.kid} is not an Ed25519 key")
    assert isinstance(private, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey))
    return SigningKey(
        stored.kid,
        algorithm,
        private,
        private.public_key(),
        public_jwk(private.public_key(), algorithm),
        _utc(stored.created_at),
        _utc(stored.retire_after),
        _utc(stored.not_after),
    )


def _utc(moment: datetime) -> datetime:
    # SQLite gives naive datetimes back: they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class KeySet:
    """The keys one instance knows, at one moment: which signs, which are published."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = sorted(keys, key=lambda k: (k.created_at, k.kid), reverse=True)
        self.by_kid = {k.kid: k for k in self.keys}

    def signing(self, algorithm: Algorithm, now: datetime) -> SigningKey | None:
        """The newest key of ``algorithm`` that signs at ``now``."""
        for key in self.keys:
            if key.algorithm == algorithm and key.signs_at(now):
                return key
        return None

    def published(self, now: datetime) -> list[SigningKey]:
        """What the JWKS lists: keys whose tokens may still be alive, and the next one,
        published ahead of the moment it starts signing."""
        return [k for k in self.keys if now < k.not_after]

    def jwks(self, now: datetime) -> dict[str, Any]:
        return {"keys": [k.public_jwk for k in self.published(now)]}

    def verifying(self, kid: str, now: datetime) -> SigningKey | None:
        key = self.by_kid.get(kid)
        return key if key is not None and now < key.not_after else None
