"""Revoked access tokens, shared through the state backend.

Revoking a token stores its ``jti`` under a key that expires with the token (no revoked
token outlives its own expiry in the backend) and publishes it on :data:`CHANNEL`, so
that every worker of every instance sharing the backend refuses it at once.

This is the authorization server's side. Verifiers on protected routes keep the revoked
set in memory, fed by the channel (``stages/auth/revocations.py``); the endpoints here ask
the backend itself, since introspection and revocation are not on the hot path.
"""

from __future__ import annotations

from bastion.state.interface import StateBackend

#: Where revocations are announced; the message is the ``jti``.
CHANNEL = "auth:revoked"
_KEY = "auth:revoked:"


async def revoke(state: StateBackend, jti: str, ttl: float) -> None:
    """Remember ``jti`` as revoked for ``ttl`` seconds (until the token expires) and tell
    every subscriber."""
    await state.set(_KEY + jti, b"1", ttl=max(ttl, 1.0))
    await state.publish(CHANNEL, jti.encode("utf-8"))


async def is_revoked(state: StateBackend, jti: str) -> bool:
    """Whether ``jti`` was revoked (and its token has not expired since)."""
    return await state.get(_KEY + jti) is not None
