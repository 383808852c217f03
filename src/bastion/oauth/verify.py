"""Verifying the gateway's own access tokens on protected routes: a
:class:`~bastion.stages.auth.methods.CredentialVerifier` over the server's key ring.

The auth stage hands it bearer tokens whose issuer is this server's. It needs no JWKS
round trip: the keys are the ones the worker's OAuth server loaded (``services.shared``),
so a token is checked with keys already parsed. Revocation is checked on every token.

This is the minimal adapter until the JWT verifier (``stages/auth/jwt``) takes the key
ring as one more issuer with static keys and the worker-wide revoked set
(``stages/auth/revocations.py``) replaces the state look-up here.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from bastion.oauth import revocation
from bastion.oauth.server import KEYRING, KeyRing
from bastion.oauth.tokens import Invalid, decode
from bastion.stages.auth.methods import AuthFailure, Verdict
from bastion.types import Principal

if TYPE_CHECKING:
    from bastion.services import Services


class OwnTokenVerifier:
    """Access tokens of the built-in OAuth server."""

    def __init__(self) -> None:
        self._services: Services | None = None
        self._ring: KeyRing | None = None

    async def start(self, services: Services) -> None:
        self._services = services
        self._ring = services.shared(KEYRING, KeyRing)

    async def close(self) -> None:
        return None

    def verify(self, credential: str) -> Verdict | Awaitable[Verdict]:
        ring, services = self._ring, self._services
        if ring is None or services is None:
            raise RuntimeError("the OAuth token verifier is not started")
        claims = decode(credential, ring.keys, issuer=ring.issuer, audience=ring.audience, now=services.clock.wall())
        if isinstance(claims, Invalid):
            return AuthFailure(claims.reason)
        return self._unless_revoked(services, claims)

    @staticmethod
    async def _unless_revoked(services: Services, claims: dict[str, Any]) -> Verdict:
        if await revocation.is_revoked(services.state, str(claims["jti"])):
            return AuthFailure("auth.revoked")
        return principal_of(claims)


def principal_of(claims: dict[str, Any]) -> Principal:
    """Who a token of ours proves: its consumer (``sub``), the client as the credential."""
    subject = str(claims["sub"])
    scope = claims.get("scope")
    return Principal(
        consumer_id=subject,
        consumer_name=subject,
        credential_id=str(claims["client_id"]),
        scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
        claims=claims,
    )
