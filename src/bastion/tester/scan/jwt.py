"""Just enough JWT (RFC 7519, compact JWS) to test how an API validates tokens.

The scanner never needs to *verify* a token: it decodes the user's real one, forges variants
(``alg: none``, wrong key, algorithm swapped, expired) and cracks HMAC secrets offline against a
wordlist, then lets the API say which forgeries it accepts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

HMAC_ALGS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Jwt:
    """A decoded compact JWS."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return str(self.header.get("alg", ""))


def decode(token: str) -> Jwt | None:
    """The token's parts, or None when it is not a JWT with JSON header and claims."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = orjson.loads(unb64url(parts[0]))
        claims = orjson.loads(unb64url(parts[1]))
        signature = unb64url(parts[2])
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return Jwt(header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


def encode(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A compact JWS; HMAC-signed with ``key`` for HS* algorithms, random bytes for others, empty for none."""
    signing_input = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(claims))}"
    alg = str(header.get("alg", ""))
    if alg.lower() == "none":
        return signing_input + "."
    if alg in HMAC_ALGS:
        digest = hmac.new(key or os.urandom(32), signing_input.encode("ascii"), HMAC_ALGS[alg]).digest()
    else:
        digest = os.urandom(256)
    return f"{signing_input}.{b64url(digest)}"


def crack(token: Jwt, secrets: Iterable[str]) -> str | None:
    """The HMAC secret from ``secrets`` that produced the token's signature, or None."""
    digestmod = HMAC_ALGS.get(token.alg)
    if digestmod is None:
        return None
    name = digestmod().name
    message, signature = token.signing_input, token.signature
    for secret in secrets:
        # hmac.digest is the one-shot C path: a million candidates take about a second.
        if hmac.digest(secret.encode("utf-8"), message, name) == signature:
            return secret
    return None


def numeric_secrets(max_digits: int = 6) -> Iterable[str]:
    """Every decimal secret of 1 to ``max_digits`` digits, leading zeros included (``"0042"``)."""
    for digits in range(1, max_digits + 1):
        for number in range(10**digits):
            yield str(number).zfill(digits)


def candidates() -> Iterable[str]:
    """What the weak-secret check tries: the bundled wordlist, then every number of up to six digits."""
    yield from wordlist()
    yield from numeric_secrets()


def wordlist() -> list[str]:
    """The bundled list of well-known weak JWT secrets (one per line, ``#`` comments)."""
    text = resources.files("bastion.tester.scan").joinpath("data/jwt-secrets.txt").read_text(encoding="utf-8")
    return [line for line in (raw.rstrip("\n") for raw in text.splitlines()) if line and not line.startswith("#")]
