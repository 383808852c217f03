"""Client secrets: generated here only, shown once, stored as an HMAC with the pepper.

A secret is 256 random bits (URL-safe base64, prefixed ``bcs_`` so secret scanners can
recognise it). The store keeps ``HMAC-SHA-256(pepper, secret)``: a stolen database without
the pepper gives nothing to try offline, and the comparison is in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "bcs_"


def new_secret() -> str:
    """A new client secret (printed once by ``bastion oauth clients create``)."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_secret(pepper: bytes, secret: str) -> bytes:
    """What the store keeps of ``secret``."""
    return hmac.new(pepper, secret.encode("utf-8"), hashlib.sha256).digest()


#: Compared against when the client is unknown or has no secret, so that the answer takes
#: the same work as for a known client with a wrong secret.
_DECOY = bytes(32)


def secret_matches(pepper: bytes, secret: str, stored: bytes | None) -> bool:
    """Whether ``secret`` is the one whose hash is ``stored`` (constant time; ``None`` never matches)."""
    computed = hash_secret(pepper, secret)
    return hmac.compare_digest(computed, stored if stored is not None else _DECOY) and stored is not None
