"""The store's tables, as typed SQLAlchemy models.

The schema itself is created by the migrations (``migrations/versions``), never from these
classes: a test checks that the two agree. Timestamps are UTC and timezone-aware on the
Python side whatever the database keeps (SQLite keeps no zone).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A point in time, stored in UTC, read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the store takes timezone-aware datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON, bytes: LargeBinary}


class Consumer(Base):
    """Who calls the APIs: holds credentials, roles and a plan."""

    __tablename__ = "consumers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    roles: Mapped[list[str]] = mapped_column(default=list)
    plan: Mapped[str | None] = mapped_column(String(64))
    # "metadata" is taken by SQLAlchemy's declarative base: the attribute is meta.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    #: CIDRs it may call from / never from, and the client certificates that identify it
    #: (mTLS), as the configuration writes them.
    ip_allow: Mapped[list[str]] = mapped_column(default=list)
    ip_deny: Mapped[list[str]] = mapped_column(default=list)
    certificates: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    #: Declared in the configuration: synced from it, read-only to the CLI and admin API.
    declared: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApiKey(Base):
    """An API key: only its keyed hash is kept, never the key."""

    __tablename__ = "api_keys"

    #: The key's public id: the first characters of its random part (see keyformat).
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    consumer_id: Mapped[str] = mapped_column(String(36), ForeignKey("consumers.id", ondelete="CASCADE"), index=True)
    #: HMAC-SHA-256 of the whole key under the pepper.
    hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    #: What is shown of it (``bst_AbCd1234…``).
    prefix: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    #: The key that replaced this one by rotation (this one works until its expires_at).
    replaced_by: Mapped[str | None] = mapped_column(String(16))


class OAuthClient(Base):
    """A machine client of the built-in OAuth server (client credentials grant)."""

    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    consumer_id: Mapped[str] = mapped_column(String(36), ForeignKey("consumers.id", ondelete="CASCADE"), index=True)
    #: HMAC-SHA-256 of the client secret under the pepper (None: private_key_jwt only).
    secret_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    #: The client's public keys for private_key_jwt.
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    scopes: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class SigningKey(Base):
    """A key the built-in OAuth server signs tokens with (rotated; old ones verify until not_after)."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    private_pem: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: No new token is signed with it after this.
    retire_after: Mapped[datetime] = mapped_column()
    #: It is no longer published (no token it signed is still valid).
    not_after: Mapped[datetime] = mapped_column()


class Ownership(Base):
    """Learned ownership: which consumer created an object behind a route."""

    __tablename__ = "ownership"

    route_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    object_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    consumer_id: Mapped[str] = mapped_column(String(36), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Generation(Base):
    """One row (id 1): a counter bumped by every write the data plane must notice, so that a
    worker polls one integer to know whether its snapshot is current."""

    __tablename__ = "generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


#: The audit records the partial indexes on ``consumer`` and ``decision`` hold (migration 0005):
#: each index costs every record it holds a B-tree insert, and queries by consumer name one,
#: queries by decision look for records that were not allowed.
AUDIT_CONSUMER_INDEXED = "consumer IS NOT NULL"
AUDIT_DECISION_INDEXED = "decision != 'allowed'"


class AuditRecord(Base):
    """One request as the audit log keeps it (issue 17): who, what, and what was decided.

    Written in batches by each worker's audit writer, never on the request path; ``id`` is
    the writer's (unique, kept in its spool), so a spool replayed after a crash inserts
    each record once. Identifiers only: never a credential's secret.
    """

    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_records_consumer", "consumer", sqlite_where=text(AUDIT_CONSUMER_INDEXED),
              postgresql_where=text(AUDIT_CONSUMER_INDEXED)),
        Index("ix_audit_records_decision", "decision", sqlite_where=text(AUDIT_DECISION_INDEXED),
              postgresql_where=text(AUDIT_DECISION_INDEXED)),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: When the request head arrived.
    ts: Mapped[datetime] = mapped_column(index=True)
    request_id: Mapped[str] = mapped_column(String(128))
    #: The gateway instance and worker index that served it.
    instance: Mapped[str] = mapped_column(String(128))
    worker: Mapped[int] = mapped_column(Integer)
    consumer: Mapped[str | None] = mapped_column(String(128))
    credential: Mapped[str | None] = mapped_column(String(128))
    client: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    path: Mapped[str | None] = mapped_column(Text)
    #: The route's id: its OpenAPI operationId when it has one.
    route: Mapped[str | None] = mapped_column(String(255), index=True)
    service: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[int] = mapped_column(Integer)
    bytes_in: Mapped[int] = mapped_column(BigInteger)
    bytes_out: Mapped[int] = mapped_column(BigInteger)
    latency_ms: Mapped[float] = mapped_column(Float)
    upstream_ms: Mapped[float | None] = mapped_column(Float)
    #: ``allowed``, ``monitored`` (a stage in shadow mode flagged it) or ``blocked``.
    decision: Mapped[str] = mapped_column(String(16))
    #: Who blocked it (a stage, or ``core``), the rule (a detection rule id, else the reason
    #: code) and its category.
    stage: Mapped[str | None] = mapped_column(String(64))
    rule: Mapped[str | None] = mapped_column(String(128))
    category: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(128))
    #: The rate limits' state after this request (``RateLimit`` header form).
    ratelimit: Mapped[str | None] = mapped_column(Text)
    tls: Mapped[str | None] = mapped_column(String(16))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    upstream: Mapped[str | None] = mapped_column(String(255))
    upstream_error: Mapped[str | None] = mapped_column(String(64))
    #: Every stage's decision and the stages' own (redacted) evidence.
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class AlertRecord(Base):
    """One incident a threat detector raised (issue 17): the alert its webhooks received.

    Written by the worker that raised it, off the request path; listed by ``bastion alerts``.
    """

    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: The incident's first and last events (its time span when the alert was raised).
    first_seen: Mapped[datetime] = mapped_column()
    last_seen: Mapped[datetime] = mapped_column(index=True)
    detector: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    #: ``alert``, or ``block`` when the subject was put on the block list.
    action: Mapped[str] = mapped_column(String(16))
    count: Mapped[int] = mapped_column(Integer)
    window_seconds: Mapped[float] = mapped_column(Float)
    summary: Mapped[str] = mapped_column(Text)
    #: Who: ``{"ip": ...}``, ``{"credential": ...}`` or ``{"consumer": ..., "route": ...}``.
    subject: Mapped[dict[str, Any]] = mapped_column()
    instance: Mapped[str] = mapped_column(String(128))
    #: ``open``, ``acknowledged`` (someone is on it) or ``resolved``, set from the dashboard,
    #: the admin API or the CLI, with who did it and when.
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    handled_by: Mapped[str | None] = mapped_column(String(128))
    handled_at: Mapped[datetime | None] = mapped_column()


class _LoginMixin:
    """What admin users and portal accounts share: a password hash (argon2id), an optional
    TOTP second factor (its secret encrypted, see :mod:`bastion.control.accounts.totp`), and a
    lockout after repeated failures."""

    password_hash: Mapped[str] = mapped_column(String(255))
    #: Set for a one-time password: the next login must choose a new one.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)
    totp_secret: Mapped[str | None] = mapped_column(Text)
    #: The last TOTP time step accepted: a code is never accepted twice.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column()
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column()


class AdminUser(_LoginMixin, Base):
    """A person or machine that administers Bastion, with one role: ``admin``, ``operator``
    or ``viewer`` (see :mod:`bastion.control.accounts.roles`)."""

    __tablename__ = "admin_users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))


class AdminToken(Base):
    """An admin API token (``bsa_…``), for scripts and the CLI: only its keyed hash is kept.
    Its role is at most its user's."""

    __tablename__ = "admin_tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), ForeignKey("admin_users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()


class PortalAccount(_LoginMixin, Base):
    """A developer-portal login of one consumer: signs in to manage that consumer's own keys."""

    __tablename__ = "portal_accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    consumer_id: Mapped[str] = mapped_column(String(36), ForeignKey("consumers.id", ondelete="CASCADE"), index=True)
    login: Mapped[str] = mapped_column(String(255), unique=True)
    #: HMAC of a pending invitation's token (the link is shown once), and when it lapses.
    invite_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    invite_expires_at: Mapped[datetime | None] = mapped_column()


class WebSession(Base):
    """A signed-in browser (dashboard or portal). ``id`` is the keyed hash of the cookie's
    value, so a copy of the table cannot be replayed as cookies."""

    __tablename__ = "web_sessions"

    id: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    #: ``admin`` (dashboard) or ``portal``.
    kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(36), index=True)
    #: The session's CSRF token, sent back by every form and unsafe request.
    csrf: Mapped[str] = mapped_column(String(64))
    #: Whether the second factor was given (a session without it can only finish the login).
    mfa: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(64))


class AdminAuditEntry(Base):
    """One write action on the control plane: who, what, before and after, from where."""

    __tablename__ = "admin_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    #: The admin user's name (or ``portal:<login>``, or ``cli`` for a command on the store).
    actor: Mapped[str] = mapped_column(String(128))
    #: ``token``, ``session`` or ``cli``.
    via: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: The client address, or ``cli``.
    source: Mapped[str] = mapped_column(String(64))
