"""Verification keys, loaded once into ``cryptography`` objects and bound to one algorithm family.

A key is parsed when the configuration loads (a PEM or a JWK in ``keys``) or when a JWKS is
fetched, never per request: verifying is then one call into ``cryptography`` (or ``hmac``).
Each key belongs to one family (RSA, EC P-256, Ed25519, HMAC) and verifies only the
algorithms of that family, so a token cannot make an RSA public key serve as an HMAC
secret (the RS256 -> HS256 confusion), whatever its header says.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Literal, TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

#: The algorithms Bastion verifies. ``none`` is not one of them, and never will be.
Algorithm: TypeAlias = Literal["RS256", "PS256", "ES256", "EdDSA", "HS256"]
Family: TypeAlias = Literal["RSA", "EC-P256", "Ed25519", "HMAC"]

FAMILY: dict[str, Family] = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC-P256", "EdDSA": "Ed25519", "HS256": "HMAC"}
#: Smallest RSA modulus accepted (NIST SP 800-131A; RFC 7518 requires 2048 for RS256).
MIN_RSA_BITS = 2048
#: Shortest HS256 secret accepted: the output size of SHA-256 (RFC 7518 section 3.2).
MIN_HMAC_BYTES = 32

_SHA256 = hashes.SHA256()
_PKCS1 = padding.PKCS1v15()
# RFC 7518 3.5: PS256 uses MGF1 with SHA-256 and a salt as long as the hash.
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
_ECDSA = ec.ECDSA(hashes.SHA256())

PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | Ed25519PublicKey


class UnusableKey(ValueError):
    """A key that cannot be used, with a message that names no secret."""


class VerifyingKey:
    """One loaded key: what it may verify, and the verification itself."""

    __slots__ = ("_hmac", "_public", "alg", "family", "kid")

    def __init__(
        self, family: Family, kid: str | None, alg: str | None, public: PublicKey | None, secret: bytes = b""
    ) -> None:
        self.family: Family = family
        self.kid = kid
        #: The JWK's own ``alg`` member: when set, the key verifies that algorithm only.
        self.alg = alg
        self._public = public
        self._hmac = secret

    def accepts(self, alg: str) -> bool:
        """Whether a token signed with ``alg`` may be checked with this key at all."""
        return FAMILY.get(alg) == self.family and (self.alg is None or self.alg == alg)

    def verify(self, alg: str, signature: bytes, signing_input: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``signing_input`` under ``alg``
        (the caller checked :meth:`accepts`)."""
        public = self._public
        try:
            if alg == "HS256":
                return hmac.compare_digest(hmac.digest(self._hmac, signing_input, "sha256"), signature)
            if alg == "ES256":
                # JWS carries ECDSA as r || s, 32 bytes each (RFC 7518 3.4), not DER.
                if len(signature) != 64 or not isinstance(public, ec.EllipticCurvePublicKey):
                    return False
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                public.verify(encode_dss_signature(r, s), signing_input, _ECDSA)
                return True
            if alg == "EdDSA" and isinstance(public, Ed25519PublicKey):
                public.verify(signature, signing_input)
                return True
            if isinstance(public, rsa.RSAPublicKey):
                if alg == "RS256":
                    public.verify(signature, signing_input, _PKCS1, _SHA256)
                    return True
                if alg == "PS256":
                    public.verify(signature, signing_input, _PSS, _SHA256)
                    return True
        except InvalidSignature:
            return False
        return False

    def __repr__(self) -> str:  # never the secret
        return f"VerifyingKey({self.family}, kid={self.kid!r}, alg={self.alg!r})"


def hmac_key(secret: bytes) -> VerifyingKey:
    """The HS256 key of an issuer's configured secret (at least :data:`MIN_HMAC_BYTES`)."""
    if len(secret) < MIN_HMAC_BYTES:
        raise UnusableKey(f"an HS256 secret must be at least {MIN_HMAC_BYTES} bytes long, this one has {len(secret)}")
    return VerifyingKey("HMAC", None, "HS256", None, secret)


def _family_of(public: object, where: str) -> Family:
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < MIN_RSA_BITS:
            raise UnusableKey(f"{where}: an RSA key of {public.key_size} bits; at least {MIN_RSA_BITS} are required")
        return "RSA"
    if isinstance(public, ec.EllipticCurvePublicKey):
        if not isinstance(public.curve, ec.SECP256R1):
            raise UnusableKey(f"{where}: an EC key on {public.curve.name}; only P-256 (ES256) is supported")
        return "EC-P256"
    if isinstance(public, Ed25519PublicKey):
        return "Ed25519"
    raise UnusableKey(f"{where}: a {type(public).__name__}; expected an RSA, EC P-256 or Ed25519 public key")


def load_pem(text: str, where: str = "key") -> VerifyingKey:
    """A public key (``BEGIN PUBLIC KEY``) or the key of a certificate (``BEGIN CERTIFICATE``)."""
    if "PRIVATE KEY" in text:
        raise UnusableKey(f"{where} is a private key: give the public key (the private key must not be in the config)")
    data = text.strip().encode()
    public: object
    try:
        if data.startswith(b"-----BEGIN CERTIFICATE-----"):
            public = x509.load_pem_x509_certificate(data).public_key()
        else:
            public = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UnusableKey(f"{where} is not a PEM public key or certificate ({exc})") from None
    family = _family_of(public, where)
    return VerifyingKey(family, None, None, public)  # type: ignore[arg-type]  # checked by _family_of


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding (RFC 7515 section 2): anything else is refused, so
    one token has one spelling."""
    if "=" in text or "+" in text or "/" in text:
        raise ValueError("not base64url")
    padded = text.translate(_TO_STD) + "=" * (-len(text) % 4)
    return binascii.a2b_base64(padded, strict_mode=True)


_TO_STD = str.maketrans("-_", "+/")


def _int(jwk: Mapping[str, object], name: str, where: str) -> int:
    raw = jwk.get(name)
    if not isinstance(raw, str) or not raw:
        raise UnusableKey(f"{where}: member {name!r} is missing or not a string")
    try:
        return int.from_bytes(b64url_decode(raw), "big")
    except ValueError:
        raise UnusableKey(f"{where}: member {name!r} is not base64url") from None


def _bytes(jwk: Mapping[str, object], name: str, where: str, size: int) -> bytes:
    raw = jwk.get(name)
    if not isinstance(raw, str):
        raise UnusableKey(f"{where}: member {name!r} is missing or not a string")
    try:
        value = b64url_decode(raw)
    except ValueError:
        raise UnusableKey(f"{where}: member {name!r} is not base64url") from None
    if len(value) != size:
        raise UnusableKey(f"{where}: member {name!r} has {len(value)} bytes, expected {size}")
    return value


def load_jwk(jwk: Mapping[str, object], where: str = "JWK") -> VerifyingKey:
    """A public JWK (RFC 7517) of kty RSA, EC (P-256) or OKP (Ed25519) meant for signatures."""
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise UnusableKey(f"{where}: kid must be a string")
    if kid is not None:
        where = f"{where} {kid!r}"
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise UnusableKey(f"{where}: use is {use!r}, not 'sig'")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise UnusableKey(f"{where}: key_ops does not allow 'verify'")
    if "d" in jwk:
        raise UnusableKey(f"{where} is a private key: give the public key only")
    kty = jwk.get("kty")
    public: PublicKey
    try:
        if kty == "RSA":
            public = rsa.RSAPublicNumbers(_int(jwk, "e", where), _int(jwk, "n", where)).public_key()
        elif kty == "EC":
            if jwk.get("crv") != "P-256":
                raise UnusableKey(f"{where}: curve {jwk.get('crv')!r}; only P-256 (ES256) is supported")
            x = int.from_bytes(_bytes(jwk, "x", where, 32), "big")
            y = int.from_bytes(_bytes(jwk, "y", where, 32), "big")
            public = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()  # checks the point
        elif kty == "OKP":
            if jwk.get("crv") != "Ed25519":
                raise UnusableKey(f"{where}: curve {jwk.get('crv')!r}; only Ed25519 (EdDSA) is supported")
            public = Ed25519PublicKey.from_public_bytes(_bytes(jwk, "x", where, 32))
        elif kty == "oct":
            raise UnusableKey(f"{where}: a symmetric key; HS256 secrets come from secret_env or secret_file only")
        else:
            raise UnusableKey(f"{where}: kty {kty!r}; expected RSA, EC or OKP")
    except (ValueError, UnsupportedAlgorithm) as exc:
        if isinstance(exc, UnusableKey):
            raise
        raise UnusableKey(f"{where}: not a valid public key ({exc})") from None
    family = _family_of(public, where)
    alg = jwk.get("alg")
    if alg is not None and FAMILY.get(str(alg)) != family:
        raise UnusableKey(f"{where}: alg {alg!r} is not an algorithm of its {family} key")
    return VerifyingKey(family, kid, None if alg is None else str(alg), public)


class KeySet:
    """Keys by ``kid`` (and those without one), as one immutable snapshot."""

    __slots__ = ("by_kid", "keys")

    def __init__(self, keys: Iterable[VerifyingKey]) -> None:
        self.keys = tuple(keys)
        self.by_kid = {k.kid: k for k in self.keys if k.kid is not None}

    def find(self, kid: str | None, alg: str) -> VerifyingKey | None:
        """The key a token names by ``kid``; without a matching kid, the one key of ``alg``'s
        family that could have signed it, if there is exactly one (an issuer with a single key
        per family need not send kids). The returned key may not accept ``alg``: the caller
        refuses that as an algorithm mismatch."""
        if kid is not None:
            found = self.by_kid.get(kid)
            if found is not None:
                return found
        family = FAMILY.get(alg)
        candidates = [k for k in self.keys if k.family == family and (kid is None or k.kid is None)]
        return candidates[0] if len(candidates) == 1 else None


def fingerprint(jwks: Iterable[Mapping[str, object]]) -> str:
    """A digest of a JWKS's keys, to tell a changed set from a refetch of the same one."""
    digest = hashlib.sha256()
    for text in sorted(repr(sorted(jwk.items())) for jwk in jwks):
        digest.update(text.encode())
    return digest.hexdigest()
