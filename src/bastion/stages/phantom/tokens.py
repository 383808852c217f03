"""Phantom tokens: what is stored for one, under which key, and how it is read back.

A phantom token is ``bpt_`` and 256 random bits (base64url): it carries nothing, so only
the state backend can say what it stands for. It is stored under the SHA-256 of the token
(whoever reads the state learns no usable token) as a small JSON record: the upstream's
token, the consumer and what the upstream's JWT claimed (read, not verified: the upstream
issued it to this login a moment ago), and when it expires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from bastion.types import Principal

#: What every phantom token starts with (so the auth stage knows it by shape).
PHANTOM_PREFIX = "bpt_"
#: Where records are kept in the state backend.
_KEY_PREFIX = "phantom:"


def new_token() -> str:
    """A fresh phantom token: 256 bits from the OS's generator."""
    return PHANTOM_PREFIX + secrets.token_urlsafe(32)


def state_key(token: str) -> str:
    """The state key of a phantom token's record: its SHA-256, never the token itself."""
    return _KEY_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def credential_id(token: str) -> str:
    """How the access record names a phantom token: a prefix of its hash, not the token."""
    return PHANTOM_PREFIX + hashlib.sha256(token.encode()).hexdigest()[:8]


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of ``token`` if it is a JWT (its payload, unverified), else ``None``."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


@dataclass(frozen=True, slots=True)
class Record:
    """What a phantom token stands for."""

    upstream_token: str
    consumer: str
    scopes: tuple[str, ...]
    roles: tuple[str, ...]
    claims: dict[str, Any]
    #: Wall-clock second it expires at (the state's TTL removes it then too).
    expires: float

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "t": self.upstream_token,
                "c": self.consumer,
                "s": list(self.scopes),
                "r": list(self.roles),
                "claims": self.claims,
                "exp": self.expires,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Record | None:
        """The record in ``raw``; ``None`` when it is not one (never trusted blindly)."""
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(doc, dict):
            return None
        token, consumer, exp = doc.get("t"), doc.get("c"), doc.get("exp")
        scopes, roles, claims = doc.get("s"), doc.get("r"), doc.get("claims")
        if not (isinstance(token, str) and token and isinstance(consumer, str)):
            return None
        if not (isinstance(exp, (int, float)) and isinstance(scopes, list) and isinstance(roles, list)):
            return None
        return cls(
            token,
            consumer,
            tuple(str(s) for s in scopes),
            tuple(str(r) for r in roles),
            claims if isinstance(claims, dict) else {},
            float(exp),
        )

    def principal(self, phantom: str) -> Principal:
        """The caller this record proves, as the auth stage sets it on the exchange."""
        return Principal(
            consumer_id=self.consumer,
            consumer_name=self.consumer,
            credential_id=credential_id(phantom),
            scopes=frozenset(self.scopes),
            roles=frozenset(self.roles),
            claims=self.claims,
        )


def scopes_of(claims: dict[str, Any]) -> tuple[str, ...]:
    """``scope`` (space-separated, RFC 8693) or ``scp`` (a list) of a JWT's claims."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return tuple(s for s in scope.split(" ") if s)
    scp = claims.get("scp")
    if isinstance(scp, list):
        return tuple(str(s) for s in scp)
    return ()
