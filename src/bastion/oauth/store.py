"""What the authorization server needs from the durable store (``bastion.store``).

The endpoints and the CLI program against :class:`OAuthStore`; :mod:`bastion.oauth.sqlstore`
implements it over the store's ``oauth_clients``, ``consumers`` and ``signing_keys`` tables.
Every method is synchronous (SQLAlchemy's sync engine): workers call them in a thread,
never on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bastion.oauth.keys import StoredKey


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A registered OAuth client: who it acts for, how it authenticates, what it may ask."""

    client_id: str
    consumer_id: str
    consumer_name: str
    #: HMAC of the client secret (client_secret_basic/post); ``None`` for private_key_jwt.
    secret_hash: bytes | None
    #: The client's public keys (private_key_jwt); ``None`` for a secret.
    jwks: dict[str, Any] | None
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    @property
    def auth_method(self) -> str:
        return "private_key_jwt" if self.jwks is not None else "client_secret"


class ClientExists(ValueError):
    """A client with this id is registered already."""

    def __init__(self, client_id: str) -> None:
        super().__init__(f"an OAuth client {client_id!r} exists already (`bastion oauth clients list` shows them)")
        self.client_id = client_id


class OAuthStore(Protocol):
    """The store's OAuth side. ``pepper`` keys the secret hashes and the key encryption."""

    @property
    def pepper(self) -> bytes: ...

    def find_client(self, client_id: str) -> ClientRecord | None:
        """The client, revoked or not; ``None`` when unknown."""
        ...

    def add_client(
        self, client_id: str, consumer: str, scopes: tuple[str, ...], secret_hash: bytes | None,
        jwks: dict[str, Any] | None,
    ) -> ClientRecord:
        """Register a client for the consumer named ``consumer`` (the store's
        ``UnknownConsumer`` when there is none; :class:`ClientExists`)."""
        ...

    def list_clients(self) -> list[ClientRecord]: ...

    def revoke_client(self, client_id: str, when: datetime) -> bool:
        """Mark the client revoked; tell whether it existed and was not revoked yet."""
        ...

    def signing_keys(self) -> list[StoredKey]:
        """Every stored signing key."""
        ...

    def add_signing_key(self, key: StoredKey) -> None: ...

    def drop_signing_keys(self, expired_before: datetime) -> int:
        """Delete keys whose ``not_after`` is before ``expired_before``; how many."""
        ...

    def close(self) -> None: ...
