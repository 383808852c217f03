"""Verifying the gateway's own access tokens on protected routes, through the JWT verifier.

The built-in server is one more issuer of :class:`~bastion.stages.auth.jwt.verify.JwtVerifier`,
with static keys: the public halves of the keys the worker's OAuth server holds (its
:class:`~bastion.oauth.server.KeyRing`), given to the verifier in process, never fetched over
HTTP. When the ring changes (a rotation, a key made by another instance), the issuer's keys
are replaced before the next token is checked. Everything else is the JWT verifier's: the
checks, the verified-token cache, and the worker-wide revoked set that a revocation reaches
within a second on every instance.

The auth stage takes it through :class:`WithOwnTokens`, beside a route's external issuers.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

import orjson

from bastion.oauth.server import KEYRING, KeyRing
from bastion.stages.auth.jwt.config import JwtIssuer, JwtSettings
from bastion.stages.auth.jwt.keys import KeySet, b64url_decode, load_jwk
from bastion.stages.auth.jwt.verify import JwtVerifier
from bastion.stages.auth.methods import AuthFailure, CredentialVerifier, Verdict

if TYPE_CHECKING:
    from bastion.services import Services


class OwnTokenVerifier:
    """Access tokens of the built-in OAuth server (a ``CredentialVerifier``)."""

    def __init__(self, leeway: float = 30.0, cache_size: int = 10_000) -> None:
        self.leeway = leeway
        self.cache_size = cache_size
        self._ring: KeyRing | None = None
        self._inner: JwtVerifier | None = None
        self._generation = -1

    async def start(self, services: Services) -> None:
        """Take the worker's key ring (the OAuth server, started before, filled it)."""
        ring = services.shared(KEYRING, KeyRing)
        if not ring.issuer or not ring.keys.keys:
            raise RuntimeError("the built-in OAuth server does not run in this worker (oauth_server.enabled)")
        issuer = JwtIssuer(
            issuer=ring.issuer,
            keys=[dict(k.public_jwk) for k in ring.keys.keys],
            algorithms=["ES256", "EdDSA"],  # each key is bound to its own by its JWK's alg
            audiences=[ring.audience],
            consumer_claim="sub",
            scopes_claim="scope",
        )
        inner = JwtVerifier(JwtSettings(issuers=[issuer], leeway=self.leeway, cache_size=self.cache_size))
        await inner.start(services)
        self._ring, self._inner, self._generation = ring, inner, ring.generation

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()

    @property
    def ring(self) -> KeyRing | None:
        """The worker's key ring, once started."""
        return self._ring

    def verify(self, credential: str) -> Verdict | Awaitable[Verdict]:
        ring, inner = self._ring, self._inner
        if ring is None or inner is None:
            raise RuntimeError("the OAuth token verifier is not started")
        if ring.generation != self._generation:
            self._reload(ring, inner)
        return inner.verify(credential)

    def _reload(self, ring: KeyRing, inner: JwtVerifier) -> None:
        """Give the issuer the ring's keys (loaded once here, not per token)."""
        issuer = inner.issuers[ring.issuer]
        issuer.static = KeySet([load_jwk(k.public_jwk, "OAuth signing key") for k in ring.keys.keys])
        self._generation = ring.generation


class WithOwnTokens:
    """A route's JWT verifier that also takes the built-in server's tokens.

    A token whose header names one of the server's keys (``kid``: an RFC 7638 thumbprint, so
    no other issuer's key has it) goes to :class:`OwnTokenVerifier`; any other to the route's
    own JWT verifier (external issuers), or is refused as another issuer's when the route has
    none. Reading the header is the only cost added to other issuers' tokens. This is what the
    auth stage puts in its JWT slot on a route when ``oauth_server`` is enabled.
    """

    def __init__(self, other: CredentialVerifier | None, own: OwnTokenVerifier | None = None) -> None:
        self.other = other
        self.own = own if own is not None else OwnTokenVerifier()

    async def start(self, services: Services) -> None:
        await self.own.start(services)
        if self.other is not None:
            await self.other.start(services)

    async def close(self) -> None:
        await self.own.close()
        if self.other is not None:
            await self.other.close()

    def verify(self, credential: str) -> Verdict | Awaitable[Verdict]:
        ring = self.own.ring
        kid = _header_kid(credential)
        if ring is not None and kid is not None and kid in ring.keys.by_kid:
            return self.own.verify(credential)
        if self.other is None:
            return OTHER_ISSUER
        return self.other.verify(credential)


#: A JWT that is not the server's, on a route that trusts no other issuer.
OTHER_ISSUER = AuthFailure("auth.issuer")


def _header_kid(token: str) -> str | None:
    """The ``kid`` of a compact JWS's header, or ``None`` (not one, or none named)."""
    head = token.partition(".")[0]
    if not head or len(head) > 1024:
        return None
    try:
        header = orjson.loads(b64url_decode(head))
    except ValueError:
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None
