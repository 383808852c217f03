"""Opaque tokens of an external authorization server, checked at its introspection endpoint
(RFC 7662).

A token Bastion cannot read is sent (``POST``, form-encoded, with the client's credentials)
to the endpoint, which says whether it is ``active`` and what it grants. The answer is
cached by a SHA-256 of the token: an active one for at most ``cache_ttl`` seconds and never
past the token's ``exp``; an inactive one for ``negative_cache_ttl``. Concurrent requests
with the same token share one call. When the endpoint cannot be reached, answers an error
or something that is not an introspection response, the token is refused with 503: fail
closed, and a broken endpoint is not mistaken for a bad token (nor cached).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from types import MappingProxyType
from typing import TYPE_CHECKING

import orjson

from bastion.stages.auth.jwt.cache import BoundedCache
from bastion.stages.auth.jwt.config import IntrospectionSettings, read_secret
from bastion.stages.auth.jwt.verify import audiences_of, bound_certificate, read_claim, string_set
from bastion.stages.auth.methods import AuthFailure, Verdict
from bastion.types import Principal

if TYPE_CHECKING:
    import httpx

    from bastion.services import Services

log = logging.getLogger("bastion.auth.introspection")

#: An introspection response larger than this is refused.
MAX_RESPONSE_BYTES = 64 * 1024
#: An opaque token longer than this is not sent anywhere.
MAX_TOKEN_CHARS = 4096

MALFORMED = AuthFailure("auth.malformed")
INACTIVE = AuthFailure("auth.inactive")
EXPIRED = AuthFailure("auth.token_expired")
BAD_ISSUER = AuthFailure("auth.issuer")
BAD_AUDIENCE = AuthFailure("auth.audience")
BAD_CLAIMS = AuthFailure("auth.claims")
UNAVAILABLE = AuthFailure("auth.introspection_unavailable", status=503)


class IntrospectionUnavailable(Exception):
    """The endpoint gave no usable answer (the message says why, for the log)."""


def _printable(token: str) -> bool:
    # RFC 6750 b64token characters and a few more; nothing that could break a form body or a log.
    return token.isascii() and token.isprintable() and " " not in token


class IntrospectionVerifier:
    """Checks opaque bearer tokens at one introspection endpoint (a ``CredentialVerifier``)."""

    def __init__(self, settings: IntrospectionSettings) -> None:
        self.settings = settings
        self._secret = read_secret(
            settings.client_secret_env, settings.client_secret_file, "the introspection client secret"
        ).decode()
        self._cache: BoundedCache[bytes, Verdict] = BoundedCache(settings.cache_size)
        self._inflight: dict[bytes, asyncio.Future[Verdict]] = {}
        self._wall: Callable[[], float] = time.time
        self._http: httpx.AsyncClient | None = None
        self._starts = 0

    @classmethod
    def from_settings(cls, settings: IntrospectionSettings) -> IntrospectionVerifier:
        """Compile ``settings`` (the client secret read now; no network)."""
        return cls(settings)

    async def start(self, services: Services) -> None:
        # Counted like JwtVerifier's: one verifier may serve several routes.
        self._starts += 1
        self._wall = services.clock.wall
        self._http = services.http

    async def close(self) -> None:
        self._starts -= 1
        if self._starts > 0:
            return
        for pending in self._inflight.values():
            pending.cancel()
        self._inflight.clear()

    def verify(self, credential: str) -> Verdict | Awaitable[Verdict]:
        if not credential or len(credential) > MAX_TOKEN_CHARS or not _printable(credential):
            return MALFORMED
        digest = hashlib.sha256(credential.encode()).digest()
        cached = self._cache.get(digest, self._wall())
        if cached is not None:
            return cached
        pending = self._inflight.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._introspect(credential, digest))
            self._inflight[digest] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(digest, None))
        return asyncio.shield(pending)

    async def _introspect(self, token: str, digest: bytes) -> Verdict:
        try:
            answer = await self._ask(token)
        except IntrospectionUnavailable as exc:
            log.warning("introspection at %s failed: %s; the token is refused (503)", self.settings.url, exc)
            return UNAVAILABLE
        now = self._wall()
        verdict, until = self._judge(answer, now)
        if until > now:
            self._cache.put(digest, verdict, until)
        return verdict

    async def _ask(self, token: str) -> dict[str, object]:
        http = self._http
        if http is None:
            raise IntrospectionUnavailable("the verifier was not started")
        s = self.settings
        form = {"token": token, "token_type_hint": "access_token"}
        auth: tuple[str, str] | None = None
        if s.client_auth == "client_secret_basic":
            auth = (s.client_id, self._secret)
        else:
            form |= {"client_id": s.client_id, "client_secret": self._secret}
        try:
            async with http.stream(
                "POST", s.url, data=form, auth=auth, headers={"accept": "application/json"}, timeout=s.timeout
            ) as response:
                if response.status_code != 200:
                    raise IntrospectionUnavailable(f"status {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise IntrospectionUnavailable(f"a response larger than {MAX_RESPONSE_BYTES} bytes")
        except IntrospectionUnavailable:
            raise
        except Exception as exc:  # httpx's transport errors, timeouts, protocol errors
            raise IntrospectionUnavailable(f"{type(exc).__name__}: {exc}") from None
        try:
            answer = orjson.loads(bytes(body))
        except orjson.JSONDecodeError:
            raise IntrospectionUnavailable("the response is not JSON") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
            raise IntrospectionUnavailable("the response has no boolean `active`")
        return answer

    def _judge(self, answer: dict[str, object], now: float) -> tuple[Verdict, float]:
        """What an introspection answer proves, and until when that may be reused."""
        s = self.settings
        negative_until = now + s.negative_cache_ttl
        if answer.get("active") is not True:
            return INACTIVE, negative_until
        until = now + s.cache_ttl
        exp = answer.get("exp")
        if exp is not None:
            if not isinstance(exp, (int, float)) or isinstance(exp, bool):
                return BAD_CLAIMS, negative_until
            if exp <= now:
                return EXPIRED, negative_until
            until = min(until, float(exp))
        if s.issuer is not None and answer.get("iss") != s.issuer:
            return BAD_ISSUER, negative_until
        if s.audiences and audiences_of(answer.get("aud")).isdisjoint(s.audiences):
            return BAD_AUDIENCE, negative_until
        consumer = read_claim(answer, s.consumer_claim)
        if not isinstance(consumer, str) or not consumer:
            return BAD_CLAIMS, negative_until
        bound = bound_certificate(answer.get("cnf"))  # RFC 8705 3.2
        if bound is None:
            return BAD_CLAIMS, negative_until
        jti = answer.get("jti")
        principal = Principal(
            consumer_id=consumer,
            consumer_name=consumer,
            credential_id=jti if isinstance(jti, str) else "",
            scopes=string_set(answer.get(s.scopes_claim)),
            roles=string_set(read_claim(answer, s.roles_claim)) if s.roles_claim is not None else frozenset(),
            claims=MappingProxyType(answer),
            bound_certificate=bound,
        )
        return principal, until
