"""Opaque bearer tokens of an external OAuth 2.0 server, checked at its RFC 7662
introspection endpoint (``policies.auth.introspection``).

A token asked about once is remembered (by its SHA-256, never as itself) for at most
``cache_seconds``, and an active one never beyond its own ``exp``: the next request with it,
on any route of the worker, is answered at once, with no call out. Only a token not in the cache waits for the endpoint;
an endpoint that fails or does not answer makes the verdict a 503 (fail closed), never a
pass, and is not cached.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Awaitable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from bastion.stages.auth.config import IntrospectionConfig
from bastion.stages.auth.methods import AuthFailure, Verdict
from bastion.types import Principal

if TYPE_CHECKING:
    import httpx

    from bastion.services import Clock, Services

log = logging.getLogger("bastion.auth")

INACTIVE = AuthFailure("auth.token_inactive")
UNAVAILABLE = AuthFailure("auth.introspection_unavailable", status=503)
#: Answers remembered at most (tokens are random: an attacker's tries must not grow memory).
CACHE_LIMIT = 10_000


class Answers:
    """Introspection answers by token hash, with the monotonic time each may be reused until:
    one per endpoint and client in a worker (``services.shared``), so every route asks once
    per token and a reload keeps what was learnt."""

    def __init__(self) -> None:
        self.entries: dict[bytes, tuple[Verdict, float]] = {}


class IntrospectionVerifier:
    """A :class:`~bastion.stages.auth.methods.CredentialVerifier` over one introspection endpoint."""

    def __init__(self, config: IntrospectionConfig) -> None:
        self.config = config
        self._cache = Answers().entries
        self._http: httpx.AsyncClient | None = None
        self._clock: Clock | None = None
        self._auth: tuple[str, str] = (config.client_id, "")

    async def start(self, services: Services) -> None:
        self._http = services.http
        self._cache = services.shared(f"auth.introspection:{self.config.url} {self.config.client_id}", Answers).entries
        self._clock = services.clock
        self._auth = (self.config.client_id, os.environ.get(self.config.client_secret_env, ""))

    async def close(self) -> None:
        return None  # the answers are the worker's (shared), the HTTP client too

    def verify(self, credential: str) -> Verdict | Awaitable[Verdict]:
        clock = self._clock
        if clock is None:
            raise RuntimeError("the introspection verifier was used before it started")
        digest = hashlib.sha256(credential.encode()).digest()
        cached = self._cache.get(digest)
        if cached is not None:
            if cached[1] > clock.monotonic():
                return cached[0]
            del self._cache[digest]
        return self._ask(credential, digest)

    async def _ask(self, credential: str, digest: bytes) -> Verdict:
        http, clock = self._http, self._clock
        if http is None or clock is None:
            raise RuntimeError("the introspection verifier was used before it started")
        try:
            resp = await http.post(
                self.config.url,
                data={"token": credential, "token_type_hint": "access_token"},
                auth=self._auth,
                headers={"accept": "application/json"},
            )
            answer: Any = resp.json() if resp.status_code == 200 else None
        except Exception as exc:  # unreachable, timed out, not JSON: nothing proves the token
            log.warning("introspection endpoint %s failed: %s", self.config.url, type(exc).__name__)
            return UNAVAILABLE
        if not isinstance(answer, dict):
            log.warning("introspection endpoint %s answered %s", self.config.url, resp.status_code)
            return UNAVAILABLE
        verdict, lifetime = self._verdict(answer, digest, clock.wall())
        ttl = min(lifetime, self.config.cache_seconds)
        if ttl > 0:
            self._remember(digest, verdict, clock.monotonic() + ttl)
        return verdict

    def _verdict(self, answer: dict[str, Any], digest: bytes, now: float) -> tuple[Verdict, float]:
        """What an RFC 7662 answer proves, and for how many seconds it may be reused."""
        exp = answer.get("exp")
        if answer.get("active") is not True:
            return INACTIVE, self.config.cache_seconds
        if isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp <= now:
            return AuthFailure("auth.token_expired"), self.config.cache_seconds
        lifetime = float(exp) - now if isinstance(exp, (int, float)) and not isinstance(exp, bool) else 0.0
        subject = next((str(answer[k]) for k in ("sub", "username", "client_id") if answer.get(k)), "")
        if not subject:
            return AuthFailure("auth.token_subject"), self.config.cache_seconds
        scope = answer.get("scope")
        principal = Principal(
            subject,
            str(answer.get("username") or subject),
            # Names the token in the record without revealing it (a prefix of its hash).
            "token:" + digest[:6].hex(),
            frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            frozenset(),
            MappingProxyType(dict(answer)),
        )
        # Without an exp, an active answer is not reused: nothing says how long it holds.
        return principal, lifetime

    def _remember(self, digest: bytes, verdict: Verdict, until: float) -> None:
        cache = self._cache
        if len(cache) >= CACHE_LIMIT:
            cache.pop(next(iter(cache)))  # the oldest answer
        cache[digest] = (verdict, until)


__all__ = ["IntrospectionVerifier"]
