"""Admin API tokens: ``bsa_<id>_<secret>``, 256 random bits in all, shown once; the store
keeps ``HMAC-SHA-256(pepper, token)``. The id (8 characters) names the token in listings and
the admin audit trail; the rest stays secret. Session cookies and portal invitations are
random values hashed the same way."""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "bsa_"
ID_LENGTH = 8
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_token() -> tuple[str, str]:
    """A new token and its public id."""
    token_id = "".join(secrets.choice(_ALPHABET) for _ in range(ID_LENGTH))
    return f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}", token_id


def token_id(token: str) -> str | None:
    """The id of a token-shaped string, ``None`` if it is not shaped like one."""
    if not token.startswith(PREFIX) or len(token) != len(PREFIX) + ID_LENGTH + 1 + 43:
        return None
    ident = token[len(PREFIX):len(PREFIX) + ID_LENGTH]
    if token[len(PREFIX) + ID_LENGTH] != "_" or any(c not in _ALPHABET for c in ident):
        return None
    return ident


def keyed_hash(pepper: bytes, value: str) -> bytes:
    """What the store keeps of a token, a session cookie or an invitation."""
    return hmac.new(pepper, value.encode("utf-8"), hashlib.sha256).digest()


def new_secret_value() -> str:
    """A random value for a session cookie, CSRF token or invitation link (256 bits)."""
    return secrets.token_urlsafe(32)
