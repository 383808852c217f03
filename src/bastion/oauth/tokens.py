"""Access tokens: short-lived JWTs (RFC 9068 profile) signed with the current key.

Claims: ``iss``, ``sub`` (the client's consumer, by name), ``aud``, ``exp``, ``iat``,
``jti`` (128 random bits, what revocation names), ``scope`` (space-separated) and
``client_id``. The header carries the signing key's ``kid`` and ``typ: at+jwt``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from bastion.oauth.keys import KeySet, SigningKey

#: Clock skew allowed when checking ``exp``/``iat`` of our own tokens (instances' clocks).
LEEWAY_SECONDS = 30
#: Claims every token of ours has; one without them was not issued here.
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id")


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    jti: str
    expires_in: int
    scope: str


def issue(
    key: SigningKey, *, issuer: str, audience: str, subject: str, client_id: str, scopes: tuple[str, ...],
    ttl: int, now: float,
) -> Issued:
    """Sign a new access token with ``key``."""
    jti = secrets.token_urlsafe(16)
    iat = int(now)
    scope = " ".join(scopes)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": iat,
        "exp": iat + ttl,
        "jti": jti,
        "scope": scope,
        "client_id": client_id,
    }
    token = jwt.encode(claims, key.private, algorithm=key.algorithm, headers={"kid": key.kid, "typ": "at+jwt"})
    return Issued(token, jti, ttl, scope)


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a token is not one of ours that is valid now: a reason code of the auth stage."""

    reason: str


def _looks_like_jwt(token: str) -> bool:
    return 0 < len(token) <= 8192 and token.count(".") == 2


def decode(token: str, keys: KeySet, *, issuer: str, audience: str, now: float) -> dict[str, Any] | Invalid:
    """The claims of ``token`` if it is a valid access token of this server at ``now``."""
    if not _looks_like_jwt(token):
        return Invalid("auth.malformed")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        return Invalid("auth.malformed")
    kid = header.get("kid")
    if not isinstance(kid, str):
        return Invalid("auth.kid_unknown")
    key = keys.verifying(kid, datetime.fromtimestamp(now, UTC))
    if key is None:
        return Invalid("auth.kid_unknown")
    if header.get("alg") != key.algorithm:
        return Invalid("auth.algorithm")  # a key is only ever used with its own algorithm
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.public,
            algorithms=[key.algorithm],
            audience=audience,
            issuer=issuer,
            # Times are checked below against ``now`` (the worker's clock), not PyJWT's.
            options={"require": list(REQUIRED_CLAIMS), "verify_exp": False, "verify_iat": False,
                     "verify_nbf": False},
        )
    except jwt.InvalidAudienceError:
        return Invalid("auth.audience")
    except jwt.InvalidIssuerError:
        return Invalid("auth.issuer")
    except jwt.InvalidSignatureError:
        return Invalid("auth.signature")
    except jwt.InvalidTokenError:
        return Invalid("auth.malformed")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int) or not isinstance(iat, int):
        return Invalid("auth.malformed")
    if exp + LEEWAY_SECONDS <= now:
        return Invalid("auth.token_expired")
    if iat - LEEWAY_SECONDS > now:
        return Invalid("auth.not_yet_valid")  # signed by a clock ahead of ours: not yet
    return claims
