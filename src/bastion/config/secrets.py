"""Secrets at rest: configuration values encrypted with a master key, and the check that
refuses secrets written in plain text.

A value written ``enc:v1:<base64url>`` in ``bastion.yaml`` is decrypted when the file is
read, with the master key from the environment (``BASTION_MASTER_KEY``, or a file named by
``BASTION_MASTER_KEY_FILE``): AES-256-GCM (``cryptography``), a random 96-bit nonce per
value, the version prefix as associated data. ``bastion secrets encrypt`` makes such values.

The AES key is not the master key itself but derived from it with HMAC-SHA-256 and a label
naming its use -- the scheme the store already uses for its OAuth signing keys (their PEM
password is derived so from the pepper, see :func:`derive`): one secret, several keys that
cannot stand in for one another.

The check: a field whose name says it holds a secret (``password``, ``client_secret``,
``api_key``...) or a URL with a password in it (``redis://:pw@host``, a PostgreSQL store URL,
an upstream target) must be a ``${ENV}`` reference or an encrypted value; anything else is a
config error naming file, line and field -- never the value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, TypeAlias
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: The environment variable holding the master key, and the one naming a file that does.
MASTER_KEY_ENV: Final = "BASTION_MASTER_KEY"
MASTER_KEY_FILE_ENV: Final = "BASTION_MASTER_KEY_FILE"
#: The least a master key may be (like the store's pepper): `bastion secrets new-key` makes 43 characters.
MASTER_KEY_MIN_BYTES: Final = 32
#: What an encrypted value starts with.
PREFIX: Final = "enc:v1:"
_LABEL: Final = b"bastion config secrets v1"
_NONCE: Final = 12
#: Field names whose string values are secrets (and so never plain text in the file).
SECRET_FIELDS: Final = frozenset(
    {"password", "passphrase", "secret", "client_secret", "api_key", "apikey", "private_key", "token", "credentials"}
)


#: A field's path in the file (as :mod:`bastion.config.yamlsrc` names it).
FieldPath: TypeAlias = tuple[str | int, ...]


class MasterKeyError(ValueError):
    """No usable master key, or a value it cannot decrypt: the message says which and why."""


#: Mappings whose every value is a secret, by the last two fields of their path: an
#: upstream credential header's value (``upstream.credentials.headers.X-Api-Key``), and an
#: OpenTelemetry collector's (``audit.otel.headers.authorization``).
SECRET_MAPS: Final = frozenset({("credentials", "headers"), ("otel", "headers")})


def derive(root: bytes, label: bytes) -> bytes:
    """A 256-bit key for one use (``label``) from a root secret: HMAC-SHA-256(root, label)."""
    return hmac.new(root, label, hashlib.sha256).digest()


def new_master_key() -> str:
    """A new master key: 256 random bits, base64url (43 characters)."""
    return secrets.token_urlsafe(32)


def load_master_key(environ: dict[str, str] | None = None) -> bytes | None:
    """The master key from ``BASTION_MASTER_KEY`` or the file ``BASTION_MASTER_KEY_FILE``
    names (a trailing newline dropped); ``None`` when neither is set."""
    env = os.environ if environ is None else environ
    value = env.get(MASTER_KEY_ENV)
    if value:
        key = value.encode()
        where = f"the environment variable {MASTER_KEY_ENV}"
    elif env.get(MASTER_KEY_FILE_ENV):
        path = Path(env[MASTER_KEY_FILE_ENV])
        try:
            key = path.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise MasterKeyError(f"the master key file {str(path)!r} ({MASTER_KEY_FILE_ENV}) cannot be read: "
                                 f"{exc.strerror}") from None
        where = f"the master key file {str(path)!r}"
    else:
        return None
    if len(key) < MASTER_KEY_MIN_BYTES:
        raise MasterKeyError(f"{where} holds {len(key)} bytes; a master key needs at least {MASTER_KEY_MIN_BYTES} "
                             "(`bastion secrets new-key` makes one)")
    return key


def encrypt(master: bytes, plaintext: str) -> str:
    """``plaintext`` as an ``enc:v1:`` value only ``master`` decrypts."""
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(derive(master, _LABEL)).encrypt(nonce, plaintext.encode("utf-8"), PREFIX.encode())
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")


def decrypt(master: bytes, value: str) -> str:
    """The plaintext of an ``enc:v1:`` value; :class:`MasterKeyError` when it is malformed
    or was encrypted with another key (or changed)."""
    body = value.removeprefix(PREFIX)
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        raise MasterKeyError("the encrypted value is not valid base64url") from None
    if len(raw) < _NONCE + 16:
        raise MasterKeyError("the encrypted value is too short to be one")
    try:
        plain = AESGCM(derive(master, _LABEL)).decrypt(raw[:_NONCE], raw[_NONCE:], PREFIX.encode())
    except InvalidTag:
        raise MasterKeyError(
            "the encrypted value cannot be decrypted with this master key (encrypted with another key, or changed)"
        ) from None
    return plain.decode("utf-8")


def is_secret_field(name: str) -> bool:
    """Whether a field named ``name`` holds a secret (``password``, ``webhook_secret``...;
    ``secret_env`` and ``secret_file`` name where one is, and are not)."""
    lower = name.lower()
    if lower.endswith(("_env", "_file", "_field", "_claim")):
        return False
    return lower in SECRET_FIELDS or lower.endswith(("_password", "_secret", "_api_key", "_token"))


def url_password(value: str) -> str:
    """The password of a URL (``scheme://user:password@host``), "" when it has none."""
    if "://" not in value or "@" not in value:
        return ""
    try:
        return urlsplit(value.strip()).password or ""
    except ValueError:
        return ""


def is_reference(text: str) -> bool:
    """Whether ``text`` is one ``${NAME}`` reference, or ``${NAME:-}`` (an empty default):
    nothing of the secret is in the file."""
    if not (text.startswith("${") and text.endswith("}")):
        return False
    name = text[2:-1].removesuffix(":-")
    return bool(name) and (name[0].isalpha() or name[0] == "_") and all(c.isalnum() or c == "_" for c in name)


def plaintext_secrets(
    data: Any, written: dict[FieldPath, str], fields: frozenset[str]
) -> Iterator[tuple[FieldPath, str]]:
    """(field path, what is wrong) for every secret in ``data`` that is in the file in plain
    text. ``written`` holds what the file said where a value was expanded (``${...}``) or
    decrypted (``enc:v1:...``): a secret field (one of the schema's ``fields`` named like a
    secret) must be one reference or encrypted, a URL's password a reference (or the whole
    URL encrypted)."""
    stack: list[tuple[FieldPath, Any]] = [((), data)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            stack.extend(((*path, k), v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend(((*path, i), v) for i, v in enumerate(node))
        elif isinstance(node, str) and node:
            text = written.get(path, node)
            if text.startswith(PREFIX):
                continue  # decrypted: the file holds only ciphertext
            name = path[-1] if path and isinstance(path[-1], str) else ""
            if (name in fields and is_secret_field(name)) or path[-3:-1] in SECRET_MAPS:
                if not is_reference(text.strip()):
                    yield path, "a secret in plain text"
            elif url_password(node) and not is_reference(url_password(text)):
                yield path, "a URL with a password in plain text"
