"""Registering and revoking OAuth clients (what the CLI, and later the admin API, call).

Synchronous, over an :class:`~bastion.oauth.store.OAuthStore`. A client either has a
secret (generated here, returned once, stored as its HMAC) or a JWKS (``private_key_jwt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bastion.oauth.assertion import check_client_jwks
from bastion.oauth.clientauth import MAX_ID_LENGTH, valid_client_id
from bastion.oauth.endpoints import valid_scope
from bastion.oauth.secrets import hash_secret, new_secret
from bastion.oauth.store import ClientRecord, OAuthStore


class BadClient(ValueError):
    """The client cannot be registered as asked (the message says why)."""


@dataclass(frozen=True, slots=True)
class Created:
    client: ClientRecord
    #: The client secret, to show once; ``None`` for a private_key_jwt client.
    secret: str | None


def parse_scopes(text: str) -> tuple[str, ...]:
    """``a,b`` (or ``"a b"``) as scopes; each an RFC 6749 scope token."""
    scopes = tuple(dict.fromkeys(s for s in text.replace(",", " ").split(" ") if s))
    for scope in scopes:
        if not valid_scope(scope):
            raise BadClient(f"{scope!r} is not a valid scope (printable ASCII, no quotes or backslashes)")
    return scopes


def create_client(
    store: OAuthStore, client_id: str, consumer: str, scopes: tuple[str, ...], jwks: Any | None = None
) -> Created:
    """Register ``client_id`` for ``consumer``; with ``jwks``, for private_key_jwt."""
    secret_hash, checked, secret = credentials(store.pepper, client_id, jwks)
    return Created(store.add_client(client_id, consumer, scopes, secret_hash, checked), secret)


def credentials(
    pepper: bytes, client_id: str, jwks: Any | None
) -> tuple[bytes | None, dict[str, Any] | None, str | None]:
    """What registering ``client_id`` stores (a secret's hash, or the checked JWKS) and the
    secret to show once (``None`` with a JWKS); :class:`BadClient` when either is invalid."""
    if not valid_client_id(client_id):
        raise BadClient(
            f"{client_id!r} is not a valid client id: 1 to {MAX_ID_LENGTH} of A-Z a-z 0-9 . _ ~ -"
        )
    if jwks is not None:
        try:
            checked = check_client_jwks(jwks)
        except ValueError as exc:
            raise BadClient(f"the JWKS cannot be registered: {exc}") from None
        return None, checked, None
    secret = new_secret()
    return hash_secret(pepper, secret), None, secret


def revoke_client(store: OAuthStore, client_id: str) -> bool:
    """Revoke the client: it can no longer get tokens, and introspection reports its tokens
    inactive. Tell whether it was active."""
    return store.revoke_client(client_id, datetime.now(UTC))
