"""One password login, for admin users and portal accounts alike: lockout after repeated
failures, the password checked in constant work, the second factor, the one-time password
that must be replaced. The caller loads the row in a write session and commits what this
changes (counters, lock, last login)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol

from bastion.control.accounts import passwords, totp


class LoginRow(Protocol):
    password_hash: str
    must_change_password: bool
    totp_secret: str | None
    totp_last_step: int | None
    failed_logins: int
    locked_until: datetime | None
    disabled: bool
    last_login_at: datetime | None


class Outcome(Enum):
    #: Wrong name or password (one answer for both: no account enumeration).
    REFUSED = "refused"
    #: Too many failures: refused without checking, until the lock lapses.
    LOCKED = "locked"
    #: Right password; the second factor is still to give (or to enrol).
    NEEDS_TOTP = "needs_totp"
    OK = "ok"


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=15)


def check_password(row: LoginRow | None, password: str, now: datetime, policy: LoginPolicy) -> Outcome:
    """The first step of a login. A locked or disabled account is refused whatever the
    password (after the same hashing work, so the answer's timing tells nothing)."""
    stored = row.password_hash if row is not None else None
    matches = passwords.verify_password(stored, password)
    if row is None or row.disabled:
        return Outcome.REFUSED
    if row.locked_until is not None and row.locked_until > now:
        return Outcome.LOCKED
    if not matches:
        _failed(row, now, policy)
        return Outcome.LOCKED if row.locked_until is not None and row.locked_until > now else Outcome.REFUSED
    if row.totp_secret is not None:
        return Outcome.NEEDS_TOTP
    _succeeded(row, now)
    return Outcome.OK


def check_totp(row: LoginRow, pepper: bytes, code: str, now: datetime, policy: LoginPolicy) -> Outcome:
    """The second step: a fresh TOTP code (a failure counts toward the lockout too)."""
    if row.disabled:
        return Outcome.REFUSED
    if row.locked_until is not None and row.locked_until > now:
        return Outcome.LOCKED
    if row.totp_secret is None:
        return Outcome.REFUSED
    step = totp.accepted_step(totp.unseal(pepper, row.totp_secret), code, row.totp_last_step, now.timestamp())
    if step is None:
        _failed(row, now, policy)
        return Outcome.LOCKED if row.locked_until is not None and row.locked_until > now else Outcome.REFUSED
    row.totp_last_step = step
    _succeeded(row, now)
    return Outcome.OK


def enrol_totp(row: LoginRow, pepper: bytes, secret: str, code: str, now: datetime) -> bool:
    """Turn on the second factor with ``secret`` once the user proves their app has it."""
    step = totp.accepted_step(secret, code, None, now.timestamp())
    if step is None:
        return False
    row.totp_secret = totp.seal(pepper, secret)
    row.totp_last_step = step
    return True


def set_password(row: LoginRow, password: str, name: str = "") -> str | None:
    """Replace the password (policy checked); the error, or ``None`` when done."""
    problem = passwords.policy_error(password, name)
    if problem is not None:
        return problem
    row.password_hash = passwords.hash_password(password)
    row.must_change_password = False
    return None


def _failed(row: LoginRow, now: datetime, policy: LoginPolicy) -> None:
    row.failed_logins += 1
    if row.failed_logins >= policy.max_failures:
        row.locked_until = now + policy.lockout
        row.failed_logins = 0


def _succeeded(row: LoginRow, now: datetime) -> None:
    row.failed_logins = 0
    row.locked_until = None
    row.last_login_at = now
