"""``private_key_jwt`` (RFC 7523 section 2.2 and 3): a client proves itself with a JWT it
signed with a key whose public half it registered (``bastion oauth clients create --jwks``).

The assertion must name the client as ``iss`` and ``sub``, this server (its issuer or the
endpoint's URL) as ``aud``, expire within :data:`MAX_LIFETIME` seconds, and carry a ``jti``
never seen before: each is remembered in the state backend until the assertion expires,
so a captured assertion cannot be played again on any instance.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import jwt

from bastion.state.interface import StateBackend

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Longest an assertion may live (from now to its ``exp``): what the replay memory holds.
MAX_LIFETIME = 300
LEEWAY_SECONDS = 30
#: Signature algorithms by key type: a key is used with its own family only (never HMAC).
_ALGORITHMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("EC", "P-256"): ("ES256",),
    ("EC", "P-384"): ("ES384",),
    ("OKP", "Ed25519"): ("EdDSA",),
    ("RSA", ""): ("RS256", "PS256"),
}
_REPLAY_PREFIX = "oauth:assertion:"


class BadJWKS(ValueError):
    """A JWKS a client cannot register (the message says why)."""


def check_client_jwks(data: Any) -> dict[str, Any]:
    """A client's JWKS as it may be registered: public EC, OKP or RSA (>= 2048 bits) keys,
    at least one, with distinct ``kid`` when there are several; no private or symmetric key."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise BadJWKS('expected a JWK Set: {"keys": [ ...public keys... ]}')
    kids: set[str] = set()
    for i, jwk in enumerate(data["keys"]):
        if not isinstance(jwk, dict):
            raise BadJWKS(f"key {i} is not a JSON object")
        if "d" in jwk or jwk.get("kty") == "oct":
            raise BadJWKS(f"key {i} holds private or symmetric key material: register public keys only")
        if _family(jwk) is None:
            raise BadJWKS(f"key {i}: kty {jwk.get('kty')!r} / crv {jwk.get('crv')!r} is not supported "
                          "(EC P-256/P-384, OKP Ed25519, RSA)")
        try:
            key = jwt.PyJWK(jwk)
        except jwt.PyJWKError as exc:
            raise BadJWKS(f"key {i} cannot be read: {exc}") from None
        if jwk.get("kty") == "RSA" and getattr(key.key, "key_size", 0) < 2048:
            raise BadJWKS(f"key {i}: RSA keys must have at least 2048 bits")
        kid = jwk.get("kid")
        if len(data["keys"]) > 1 and not isinstance(kid, str):
            raise BadJWKS(f"key {i} has no kid: with several keys, each needs one")
        if isinstance(kid, str):
            if kid in kids:
                raise BadJWKS(f"kid {kid!r} appears twice")
            kids.add(kid)
    return {"keys": [dict(k) for k in data["keys"]]}


def _family(jwk: dict[str, Any]) -> tuple[str, ...] | None:
    kty = str(jwk.get("kty", ""))
    return _ALGORITHMS.get((kty, "" if kty == "RSA" else str(jwk.get("crv", ""))))


def unverified_client(assertion: str) -> str | None:
    """The client an assertion claims to come from (its ``sub``, which must equal ``iss``),
    read before verifying it, to find the keys that verify it."""
    if len(assertion) > 8192 or assertion.count(".") != 2:
        return None
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    sub, iss = claims.get("sub"), claims.get("iss")
    return sub if isinstance(sub, str) and sub == iss else None


@dataclass(frozen=True, slots=True)
class Checked:
    """A valid assertion: its ``jti`` and how long it must be remembered."""

    jti: str
    remember_for: float


def verify_assertion(
    assertion: str, client_id: str, jwks: dict[str, Any], audiences: Collection[str], now: float
) -> Checked | None:
    """Check the assertion's signature (with the client's keys) and claims; ``None`` if
    anything is wrong. Replay is checked separately (:func:`first_use`)."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.InvalidTokenError:
        return None
    alg, kid = header.get("alg"), header.get("kid")
    keys = jwks.get("keys", [])
    candidates = [k for k in keys if kid is None or k.get("kid") == kid]
    if kid is None and len(keys) > 1:
        return None  # several keys: the assertion must say which
    for jwk in candidates:
        family = _family(jwk)
        if family is None or alg not in family:
            continue
        try:
            key = jwt.PyJWK(jwk, algorithm=str(alg))
            claims = jwt.decode(
                assertion,
                key.key,
                algorithms=[str(alg)],
                audience=list(audiences),
                issuer=client_id,
                leeway=LEEWAY_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except (jwt.InvalidTokenError, jwt.PyJWKError):
            return None
        return _claims_ok(claims, client_id, now)
    return None


def _claims_ok(claims: dict[str, Any], client_id: str, now: float) -> Checked | None:
    exp, jti = claims.get("exp"), claims.get("jti")
    if claims.get("sub") != client_id or not isinstance(jti, str) or not 0 < len(jti) <= 256:
        return None
    if not isinstance(exp, (int, float)) or exp + LEEWAY_SECONDS <= now or exp - now > MAX_LIFETIME:
        return None  # expired, or living longer than the replay memory would hold it
    iat = claims.get("iat")
    if iat is not None and (not isinstance(iat, (int, float)) or iat - LEEWAY_SECONDS > now):
        return None
    return Checked(jti, exp - now + LEEWAY_SECONDS)


async def first_use(state: StateBackend, client_id: str, checked: Checked) -> bool:
    """Remember the assertion's ``jti``; ``False`` when it was used before (a replay)."""
    digest = hashlib.sha256(json.dumps([client_id, checked.jti]).encode("utf-8")).hexdigest()
    return await state.incr(_REPLAY_PREFIX + digest, 1, ttl=max(checked.remember_for, 1.0)) == 1
