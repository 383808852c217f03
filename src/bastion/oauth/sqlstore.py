""":class:`~bastion.oauth.store.OAuthStore` over the durable store's tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from bastion.oauth.keys import StoredKey
from bastion.oauth.store import ClientExists, ClientRecord
from bastion.store import Store
from bastion.store import consumers as store_consumers
from bastion.store.models import Consumer, OAuthClient
from bastion.store.models import SigningKey as SigningKeyRow


class SqlOAuthStore:
    """The OAuth side of a :class:`~bastion.store.Store` (which it closes with itself)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def pepper(self) -> bytes:
        return self._store.pepper

    def find_client(self, client_id: str) -> ClientRecord | None:
        with self._store.read() as session:
            found = session.execute(
                select(OAuthClient, Consumer.name)
                .join(Consumer, Consumer.id == OAuthClient.consumer_id)
                .where(OAuthClient.client_id == client_id)
            ).one_or_none()
            return None if found is None else _record(found[0], found[1])

    def add_client(
        self, client_id: str, consumer: str, scopes: tuple[str, ...], secret_hash: bytes | None,
        jwks: dict[str, Any] | None,
    ) -> ClientRecord:
        with self._store.write() as session:
            owner = store_consumers.get(session, consumer)
            if session.get(OAuthClient, client_id) is not None:
                raise ClientExists(client_id)
            row = OAuthClient(
                client_id=client_id, consumer_id=owner.id, secret_hash=secret_hash, jwks=jwks, scopes=list(scopes)
            )
            session.add(row)
            session.flush()
            return _record(row, owner.name)

    def list_clients(self) -> list[ClientRecord]:
        with self._store.read() as session:
            rows = session.execute(
                select(OAuthClient, Consumer.name)
                .join(Consumer, Consumer.id == OAuthClient.consumer_id)
                .order_by(OAuthClient.client_id)
            ).all()
            return [_record(row, name) for row, name in rows]

    def revoke_client(self, client_id: str, when: datetime) -> bool:
        with self._store.write() as session:
            row = session.get(OAuthClient, client_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = when
            return True

    def signing_keys(self) -> list[StoredKey]:
        with self._store.read() as session:
            return [
                StoredKey(r.kid, r.algorithm, r.private_pem, dict(r.public_jwk), r.created_at, r.retire_after,
                          r.not_after)
                for r in session.execute(select(SigningKeyRow)).scalars()
            ]

    def add_signing_key(self, key: StoredKey) -> None:
        with self._store.write() as session:
            session.add(
                SigningKeyRow(
                    kid=key.kid, algorithm=key.algorithm, private_pem=key.private_pem, public_jwk=key.public_jwk,
                    created_at=key.created_at, retire_after=key.retire_after, not_after=key.not_after,
                )
            )

    def drop_signing_keys(self, expired_before: datetime) -> int:
        with self._store.write() as session:
            result = session.execute(delete(SigningKeyRow).where(SigningKeyRow.not_after < expired_before))
            return int(getattr(result, "rowcount", 0) or 0)

    def close(self) -> None:
        self._store.close()


def _record(row: OAuthClient, consumer_name: str) -> ClientRecord:
    return ClientRecord(
        row.client_id,
        row.consumer_id,
        consumer_name,
        row.secret_hash,
        dict(row.jwks) if row.jwks is not None else None,
        tuple(row.scopes),
        row.created_at,
        row.revoked_at,
    )
