"""TOTP second factors (RFC 6238: 30-second steps, 6 digits, SHA-1, as authenticator apps
expect). The shared secret must be readable to check codes, so the store keeps it encrypted
(AES-GCM, :func:`bastion.config.secrets.encrypt`) under a key derived from the pepper: a
copy of the database alone yields no second factor."""

from __future__ import annotations

import time

import pyotp

from bastion.config.secrets import decrypt, derive, encrypt

_LABEL = b"bastion control-plane totp secrets"
#: Codes of the previous and next step are accepted too (clock drift).
_DRIFT_STEPS = 1
ISSUER = "Bastion"


def new_secret() -> str:
    return pyotp.random_base32()


def seal(pepper: bytes, secret: str) -> str:
    return encrypt(derive(pepper, _LABEL), secret)


def unseal(pepper: bytes, sealed: str) -> str:
    return decrypt(derive(pepper, _LABEL), sealed)


def provisioning_uri(secret: str, account: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads (from a QR code or typed)."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def accepted_step(secret: str, code: str, last_step: int | None, now: float | None = None) -> int | None:
    """The time step ``code`` is valid for, if it is valid and newer than ``last_step`` (a code
    is accepted once: replaying it, or an older one, fails); ``None`` otherwise."""
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = int((time.time() if now is None else now) // totp.interval)
    for step in range(current - _DRIFT_STEPS, current + _DRIFT_STEPS + 1):
        if last_step is not None and step <= last_step:
            continue
        if pyotp.utils.strings_equal(totp.generate_otp(step), code):
            return step
    return None
