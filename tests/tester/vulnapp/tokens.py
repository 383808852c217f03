"""HS256 JSON Web Tokens, written out by hand so each verification step can be switched off.

Only what the vulnerable app needs: :func:`sign` issues a compact HS256 token, and
:func:`verify` checks one under a :class:`Leniency` that names which checks a seeded flaw
skips (the ``alg``, the signature, the expiry). With the default leniency it is strict.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["InvalidToken", "Leniency", "b64url_decode", "b64url_encode", "sign", "verify"]


class InvalidToken(Exception):
    """The token was refused; the message says why (never shown to clients verbatim)."""


@dataclass(frozen=True, slots=True)
class Leniency:
    """Which verification steps to skip; every field false is a correct verifier."""

    accept_alg_none: bool = False
    ignore_signature: bool = False
    ignore_expiry: bool = False


def b64url_encode(data: bytes) -> str:
    """Base64url without padding, as JWS requires."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding; ``InvalidToken`` on anything else."""
    if not text.isascii():
        raise InvalidToken("non-ASCII base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken("bad base64url") from exc


def _segment(data: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(data, separators=(",", ":"), sort_keys=True).encode())


def _mac(secret: bytes, signing_input: str) -> bytes:
    return hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()


def sign(claims: dict[str, Any], secret: bytes) -> str:
    """Return ``claims`` as a compact HS256 JWT signed with ``secret``."""
    signing_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT'})}.{_segment(claims)}"
    return f"{signing_input}.{b64url_encode(_mac(secret, signing_input))}"


def _json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(segment))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidToken(f"the {what} is not JSON") from exc
    if not isinstance(value, dict):
        raise InvalidToken(f"the {what} is not a JSON object")
    return value


def verify(token: str, secret: bytes, leniency: Leniency = Leniency(), *, now: float | None = None) -> dict[str, Any]:
    """Return the claims of ``token`` if it passes every check ``leniency`` keeps.

    Strict rules: three segments, ``alg`` exactly ``HS256``, a valid HMAC-SHA256 signature
    with ``secret`` (compared in constant time), and a numeric ``exp`` in the future.
    """
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 4096:
        raise InvalidToken("not a compact JWS")
    header = _json_object(parts[0], "header")
    claims = _json_object(parts[1], "payload")
    alg = header.get("alg")
    if isinstance(alg, str) and alg.lower() == "none":
        if not leniency.accept_alg_none:
            raise InvalidToken("alg none refused")
    elif alg != "HS256":
        # A token signed with RS256/ES256 (or an HS/RS swap) is refused by a strict verifier.
        if not leniency.ignore_signature:
            raise InvalidToken(f"alg {alg!r} refused")
    elif not leniency.ignore_signature:
        expected = _mac(secret, f"{parts[0]}.{parts[1]}")
        if not hmac.compare_digest(expected, b64url_decode(parts[2])):
            raise InvalidToken("bad signature")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise InvalidToken("no numeric exp claim")
    if not leniency.ignore_expiry and exp <= (time.time() if now is None else now):
        raise InvalidToken("expired")
    return claims
