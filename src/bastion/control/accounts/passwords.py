"""Passwords: argon2id hashes (argon2-cffi's defaults, RFC 9106's second recommended
setting), a minimum policy, and the one-time passwords ``bastion admin create`` prints."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()
MIN_LENGTH = 12
MAX_LENGTH = 1024
#: Verified when the account does not exist, so that an unknown name costs the same work as
#: a wrong password (no user enumeration by timing). A fixed hash of a random password that
#: was thrown away (a match would still be refused: see verify_password) rather than one made
#: at import: hashing costs 0.16 s of CPU and 64 MiB, and every gateway and every store command
#: imports this module. Its parameters must be the hasher's, or the work would differ: if
#: argon2-cffi's defaults ever change, a new decoy is made here as before.
_DECOY = "$argon2id$v=19$m=65536,t=3,p=4$bG3Ye8oXFcEJKbUfxAQmwg$jz+tUg0hT+n6h2ojCrjebV3tJuMe+GSqnzIoViOE0cE"
if _HASHER.check_needs_rehash(_DECOY):
    _DECOY = _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored`` (``None``: no such account, always false after
    the same work)."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _HASHER.verify(stored if stored is not None else _DECOY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _HASHER.check_needs_rehash(stored)


def policy_error(password: str, name: str = "") -> str | None:
    """Why ``password`` may not be chosen, or ``None``."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    if name and name.lower() in password.lower():
        return "a password may not contain the account's name"
    if len(set(password)) < 5:
        return "a password needs more than four different characters"
    return None


def one_time_password() -> str:
    """A random password (about 130 bits) for a new account; the first login replaces it."""
    return secrets.token_urlsafe(22)
