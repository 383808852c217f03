"""The pepper: the secret every stored credential hash is keyed with (HMAC-SHA-256).

A copy of the database alone (a backup, a replica, an injection that reads a table) then
gives nothing to test guesses against: the key is 256 random bits anyway, but a hash keyed
with a secret kept elsewhere also hides which stored hash belongs to a key found later.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from bastion.config.model import PEPPER_ENV, StoreSettings
from bastion.store.errors import StoreError

#: Bytes of a pepper Bastion makes; also the least it accepts from a file or the environment.
PEPPER_BYTES = 32


def load_pepper(settings: StoreSettings) -> bytes:
    """The pepper: ``BASTION_PEPPER`` when set, else the contents of ``pepper_file``, which is
    created (0600, 32 random bytes) when it does not exist yet."""
    env = os.environ.get(PEPPER_ENV)
    if env:
        value = env.encode()
        if len(value) < PEPPER_BYTES:
            raise StoreError(f"the environment variable {PEPPER_ENV} is {len(value)} bytes; the pepper needs at least "
                             f"{PEPPER_BYTES} (e.g. `openssl rand -base64 32`)")
        return value
    if settings.pepper_file is None:
        raise StoreError(f"no pepper: set store.pepper_file or the environment variable {PEPPER_ENV}")
    return _read_or_create(settings.pepper_file)


def _read_or_create(path: Path) -> bytes:
    try:
        value = path.read_bytes()
    except FileNotFoundError:
        value = _create(path)
    except OSError as exc:
        raise StoreError(f"the pepper file {str(path)!r} cannot be read: {exc.strerror}") from None
    if len(value) < PEPPER_BYTES:
        raise StoreError(f"the pepper file {str(path)!r} holds {len(value)} bytes; it needs at least {PEPPER_BYTES}")
    return value


def _create(path: Path) -> bytes:
    """Write a new pepper to ``path`` whole or not at all: written to a private temporary file
    and linked into place, so a worker racing another reads either nothing or all of one."""
    value = secrets.token_bytes(PEPPER_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(value)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process made it first: theirs is the pepper
            return path.read_bytes()
    except OSError as exc:
        raise StoreError(f"the pepper file {str(path)!r} cannot be created: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return value
