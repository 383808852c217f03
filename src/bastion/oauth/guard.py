"""Failed client authentications, counted in the state backend (every instance shares them).

Per client id and per client IP, in a fixed window: beyond ``failures`` within ``window``
seconds the endpoint answers 429 (with ``Retry-After``) before looking at the credentials,
so guessing a secret costs the guesser the window. Counting per client id too means a
distributed guesser cannot spread over many addresses; it also means one can lock a client
out for a window by failing on purpose, which is the accepted price (the client's secret
stays safe, and the lockout ends by itself).
"""

from __future__ import annotations

import hashlib

from bastion.config.model import ClientAuthLimit
from bastion.state.interface import StateBackend

_PREFIX = "oauth:authfail:"


def _keys(client_id: str | None, ip: str) -> list[str]:
    keys = [_PREFIX + "ip:" + ip]
    if client_id:
        # Hashed: a client id is the client's to choose (bounded, but never a key's shape).
        keys.append(_PREFIX + "client:" + hashlib.sha256(client_id.encode("utf-8")).hexdigest()[:32])
    return keys


class AuthGuard:
    """Refuses clients over the limit; counts failures."""

    def __init__(self, state: StateBackend, limit: ClientAuthLimit) -> None:
        self.state = state
        self.limit = limit

    async def over_limit(self, client_id: str | None, ip: str) -> bool:
        """Whether this client id or this address has failed too often in the window."""
        for key in _keys(client_id, ip):
            value = await self.state.get(key)
            if value is not None and int(value) >= self.limit.failures:
                return True
        return False

    async def failed(self, client_id: str | None, ip: str) -> None:
        """Count one failed authentication."""
        for key in _keys(client_id, ip):
            await self.state.incr(key, 1, ttl=self.limit.window)
