"""The format of Bastion's API keys: ``bst_<43 base62 characters>_<6-character checksum>``.

* ``bst_`` names the issuer, so secret scanners (and people) recognise a leaked key.
* 43 base62 characters drawn uniformly at random carry 256 bits (62**43 > 2**256).
* The checksum is CRC-32 of everything before it, in 6 base62 characters (62**6 > 2**32).
  It is not a security measure -- the key's secrecy is the random part, and its hash is
  keyed with the pepper -- but a cheap filter in front of the store: CRC-32 detects every
  error confined to 32 consecutive bits, so every single-character typo and every swap of
  neighbouring characters is refused without hashing or a lookup, and a scanner can tell a
  real key from a look-alike offline. A cryptographic checksum would buy nothing more here.

A key's public id is the first :data:`ID_LENGTH` characters of its random part: printed by
``bastion keys list`` and in logs, enough to tell which key was used (and for its holder
to match it), while the other 35 characters (208 bits) stay secret. Only
``HMAC-SHA-256(pepper, key)`` is ever stored.

Pure functions, no I/O: the auth stage checks a presented key's shape and checksum on
every request before it looks the key's hash up in its snapshot.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zlib
from typing import Final

PREFIX: Final = "bst_"
ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH: Final = 43
CHECKSUM_LENGTH: Final = 6
ID_LENGTH: Final = 8
#: Where the random part ends and the separator before the checksum stands.
_BODY_END: Final = len(PREFIX) + RANDOM_LENGTH
KEY_LENGTH: Final = _BODY_END + 1 + CHECKSUM_LENGTH


#: Every pair of base62 digits, in order: a checksum is three of them (62**6 = 3844**3).
_PAIRS: Final = [a + b for a in ALPHABET for b in ALPHABET]
_PAIR: Final = 62 * 62


def checksum(body: str) -> str:
    """The checksum of ``body`` (``bst_`` and the random part): CRC-32 in 6 base62 characters."""
    high, rest = divmod(zlib.crc32(body.encode("ascii")), _PAIR * _PAIR)
    middle, low = divmod(rest, _PAIR)
    return _PAIRS[high] + _PAIRS[middle] + _PAIRS[low]


def generate() -> str:
    """A new key: 256 random bits from the operating system's CSPRNG, with its checksum."""
    body = PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return f"{body}_{checksum(body)}"


def looks_like_key(credential: str) -> bool:
    """Whether ``credential`` has a key's shape (prefix and length): the auth stage's test for
    sending a bearer token to the API key verifier rather than to the JWT one."""
    return len(credential) == KEY_LENGTH and credential.startswith(PREFIX)


def is_valid(credential: str) -> bool:
    """Whether ``credential`` is a well-formed key whose checksum matches: true of every key
    Bastion made, false of every key with one character wrong or two neighbours swapped.

    The characters of the random part are not checked one by one: the checksum refuses
    accidents, and a string crafted to pass it is then simply a key the store does not know.
    """
    return (
        len(credential) == KEY_LENGTH
        and credential.isascii()
        and credential.startswith(PREFIX)
        and credential[_BODY_END] == "_"
        and credential[_BODY_END + 1 :] == checksum(credential[:_BODY_END])
    )


def key_id(key: str) -> str:
    """The key's public id (the first characters of its random part)."""
    return key[len(PREFIX) : len(PREFIX) + ID_LENGTH]


def shown_prefix(key: str) -> str:
    """What is shown of a key where it must be recognisable (``bst_AbCd1234…``)."""
    return f"{PREFIX}{key_id(key)}…"


class KeyHasher:
    """HMAC-SHA-256 under one pepper (RFC 2104), its padded key states computed once.

    ``hmac.digest`` sets the pepper up again on every call; copying the two prepared SHA-256
    states costs about half as much, and this runs on every request that presents a key.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, pepper: bytes) -> None:
        if len(pepper) > _SHA256_BLOCK:  # RFC 2104: a key longer than a block is hashed first
            pepper = hashlib.sha256(pepper).digest()
        padded = pepper.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def __call__(self, key: str) -> bytes:
        """What is stored of ``key``: HMAC-SHA-256 of it under the pepper (32 bytes)."""
        inner = self._inner.copy()
        inner.update(key.encode("ascii"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_SHA256_BLOCK: Final = 64


def key_hash(pepper: bytes, key: str) -> bytes:
    """What is stored of a key: HMAC-SHA-256 of it under the pepper (32 bytes)."""
    return hmac.digest(pepper, key.encode("ascii"), "sha256")
