"""Verifying a JWT of an external identity provider, at once whenever the keys are at hand.

``verify(token)`` answers synchronously in the common cases: a token verified before is a
cache hit (a dictionary lookup by the token, an expiry test and a revocation lookup); a new
token whose key is loaded costs one signature check with a pre-loaded key. Only a token whose
``kid`` is not in the issuer's JWKS (a rotation Bastion has not seen yet) returns an awaitable,
which waits for a refetch -- at most one per ``jwks_unknown_kid_interval`` per URL.

Checks, in order: shape (three base64url parts of JSON objects, no ``crit``), issuer (``iss``
is a configured one), algorithm (in that issuer's list), key (by ``kid``, of the
algorithm's own family), signature, then ``exp`` (required), ``nbf`` and ``iat`` (with
leeway), ``aud``, the consumer claim, ``cnf``, and the revocation of ``jti``. A token bound
to a client certificate (RFC 8705 ``cnf: {"x5t#S256": ...}``) gives a principal naming that
certificate (``bound_certificate``); the stage checks it against the request's connection,
so a cached token is checked on every request too.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

import orjson

from bastion.stages.auth.jwt.cache import BoundedCache
from bastion.stages.auth.jwt.config import JwtIssuer, JwtSettings, load_key, read_secret
from bastion.stages.auth.jwt.jwks import JwksCache, JwksTiming
from bastion.stages.auth.jwt.keys import KeySet, VerifyingKey, b64url_decode, hmac_key
from bastion.stages.auth.methods import AuthFailure, Verdict
from bastion.stages.auth.revocations import SHARED_KEY, Revocations
from bastion.types import Principal

if TYPE_CHECKING:
    from bastion.services import Services

#: A bearer token longer than this is not a JWT Bastion will parse.
MAX_TOKEN_CHARS = 16 * 1024
#: A token up to this long is its own key in the verified-token cache; a longer one is keyed
#: by its BLAKE2s, so a full cache holds at most ``cache_size`` times this many characters of
#: tokens (~20 MB at the default size), not ``MAX_TOKEN_CHARS`` times as many.
CACHE_KEY_MAX_CHARS: Final = 2048

#: What a verified token is remembered under: the token, or the digest of a long one (bytes,
#: so never equal to a token).
CacheKey = str | bytes

#: Not a JWT at all (RFC 6750: ``invalid_token`` covers malformed tokens too).
MALFORMED = AuthFailure("auth.malformed")
#: A signed token whose claims are missing or of the wrong type (no ``exp``, no consumer).
BAD_CLAIMS = AuthFailure("auth.claims")
BAD_ISSUER = AuthFailure("auth.issuer")
BAD_ALGORITHM = AuthFailure("auth.algorithm")
BAD_SIGNATURE = AuthFailure("auth.signature")
KID_UNKNOWN = AuthFailure("auth.kid_unknown")
EXPIRED = AuthFailure("auth.token_expired")
NOT_YET_VALID = AuthFailure("auth.token_not_yet_valid")
BAD_AUDIENCE = AuthFailure("auth.audience")
REVOKED = AuthFailure("auth.revoked")
KEYS_UNAVAILABLE = AuthFailure("auth.jwks_unavailable", status=503)
REVOCATIONS_UNAVAILABLE = AuthFailure("auth.revocations_unavailable", status=503)


def string_set(value: object) -> frozenset[str]:
    """Scopes or roles: a space-separated string or a list of strings (others ignored)."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str) and v)
    return frozenset()


def audiences_of(aud: object) -> frozenset[str]:
    """The audiences an ``aud`` claim names: one string or a list of them (RFC 7519 4.1.3)."""
    if isinstance(aud, str):
        return frozenset((aud,))
    if isinstance(aud, list):
        return frozenset(a for a in aud if isinstance(a, str))
    return frozenset()


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def bound_certificate(cnf: object) -> str | None:
    """The certificate an RFC 8705 ``cnf`` claim binds the token to (SHA-256, hex); "" for
    a token bound to nothing; ``None`` for a ``cnf`` this gateway cannot check (another
    confirmation method, a malformed thumbprint): such a token must not pass as a bearer one."""
    if cnf is None:
        return ""
    if not isinstance(cnf, dict) or set(cnf) != {"x5t#S256"}:
        return None
    thumbprint = cnf["x5t#S256"]
    if not isinstance(thumbprint, str) or not thumbprint:
        return None
    try:
        digest = b64url_decode(thumbprint)
    except ValueError:
        return None
    return digest.hex() if len(digest) == 32 else None


def read_claim(payload: Mapping[str, object], name: str) -> object:
    """A claim by name; a dotted name not present as such is followed into objects."""
    if name in payload or "." not in name:
        return payload.get(name)
    node: object = payload
    for part in name.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


class CompiledIssuer:
    """One issuer's settings, ready for the per-token checks."""

    __slots__ = (
        "algorithms", "audiences", "consumer_claim", "jwks", "jwks_url", "name", "roles_claim", "scopes_claim",
        "secret_digest", "static",
    )

    def __init__(self, issuer: JwtIssuer) -> None:
        self.name = issuer.issuer
        self.algorithms = frozenset(issuer.algorithms)
        self.audiences = frozenset(issuer.audiences)
        self.consumer_claim = issuer.consumer_claim
        self.scopes_claim = issuer.scopes_claim
        self.roles_claim = issuer.roles_claim
        self.jwks_url = issuer.jwks_url
        keys: list[VerifyingKey] = [load_key(k, f"key {i}") for i, k in enumerate(issuer.keys or ())]
        #: A SHA-256 of the HS256 secret read at load (b"" without one): equal settings
        #: naming a secret that changed since (its file, its variable) verify differently.
        self.secret_digest = b""
        if "HS256" in self.algorithms:
            secret = read_secret(issuer.secret_env, issuer.secret_file, "the HS256 secret")
            self.secret_digest = hashlib.sha256(secret).digest()
            keys.append(hmac_key(secret))
        #: Keys known at load (static keys, the HS256 secret); None for a JWKS issuer.
        self.static: KeySet | None = KeySet(keys) if issuer.jwks_url is None else None
        #: The worker's cache of ``jwks_url``, once started.
        self.jwks: JwksCache | None = None

    def principal(self, payload: dict[str, object], jti: str | None) -> Principal | None:
        consumer = read_claim(payload, self.consumer_claim)
        if not isinstance(consumer, str) or not consumer:
            return None
        bound = bound_certificate(payload.get("cnf"))
        if bound is None:
            return None
        scopes_value = payload.get(self.scopes_claim)
        if scopes_value is None and self.scopes_claim == "scope":
            scopes_value = payload.get("scp")
        roles = string_set(read_claim(payload, self.roles_claim)) if self.roles_claim is not None else frozenset()
        return Principal(
            consumer_id=consumer,
            consumer_name=consumer,
            credential_id=jti or "",
            scopes=string_set(scopes_value),
            roles=roles,
            claims=MappingProxyType(payload),
            bound_certificate=bound,
        )


def _jwks_factory(url: str, services: Services) -> Callable[[], JwksCache]:
    return lambda: JwksCache(url, services)


def _cache_factory(size: int) -> Callable[[], BoundedCache[CacheKey, _Verified]]:
    return lambda: BoundedCache(size)


def _cache_key(settings: JwtSettings, issuers: Iterable[CompiledIssuer]) -> str:
    """``jwt:verified:`` and a SHA-256 of the settings and of each HS256 secret's digest:
    equal only where every verdict would be equal (the secrets themselves are not kept)."""
    digest = hashlib.sha256(settings.model_dump_json().encode())
    for issuer in issuers:
        digest.update(issuer.secret_digest)
    return "jwt:verified:" + digest.hexdigest()


def token_key(token: str) -> CacheKey:
    """What ``token`` is remembered under in the verified-token cache: the token itself (the
    dictionary hashes it once, with CPython's SipHash: ~700 instructions for a 200-character
    token against ~7,400 for a BLAKE2s), or the BLAKE2s of a token longer than
    :data:`CACHE_KEY_MAX_CHARS`. Finding an entry compares a presented token with a stored
    one only when their 64-bit hashes (under the process's random key) are equal, so the
    lookup tells a client nothing about a cached token it does not already hold: no secret
    is compared."""
    if len(token) <= CACHE_KEY_MAX_CHARS:
        return token
    return hashlib.blake2s(token.encode()).digest()


class _Verified:
    """A cache entry: the principal, and what must still hold when the token is used again."""

    __slots__ = ("generation", "jti", "principal", "source")

    def __init__(self, principal: Principal, jti: str | None, source: JwksCache | None, generation: int) -> None:
        self.principal = principal
        self.jti = jti
        self.source = source
        self.generation = generation


class JwtVerifier:
    """Verifies JWTs of the configured issuers (a :class:`~bastion.stages.auth.methods.CredentialVerifier`).

    Routes with equal settings (issuers, claims, leeway, the keys and secrets they load)
    share one verified-token cache per worker (``services.shared`` under :attr:`cache_key`),
    across reloads too: a token verified on one route is a cache hit on the others. One
    verifier may also serve several routes: ``start`` and ``close`` are counted, and only
    the first start and the last close do anything.
    """

    def __init__(self, settings: JwtSettings) -> None:
        self.settings = settings
        self.leeway = settings.leeway
        self.issuers = {i.issuer: CompiledIssuer(i) for i in settings.issuers}
        self.timing = JwksTiming(
            min_refresh=settings.jwks_min_refresh,
            max_refresh=settings.jwks_max_refresh,
            default_refresh=settings.jwks_default_refresh,
            max_stale=settings.jwks_max_stale,
            unknown_kid_interval=settings.jwks_unknown_kid_interval,
        )
        #: What the worker's shared cache is kept under: a digest of everything that decides
        #: a verdict (the settings, with static keys in them, and each HS256 secret read).
        self.cache_key = _cache_key(settings, self.issuers.values())
        #: This verifier's own cache until :meth:`start` takes the worker's shared one.
        self._cache: BoundedCache[CacheKey, _Verified] = BoundedCache(settings.cache_size)
        self._wall: Callable[[], float] = time.time
        self._revocations: Revocations | None = None
        self._jwks: list[JwksCache] = []
        self._starts = 0

    @classmethod
    def from_settings(cls, settings: JwtSettings) -> JwtVerifier:
        """Compile ``settings`` (keys loaded, secrets read; no network)."""
        return cls(settings)

    async def start(self, services: Services) -> None:
        """Load the JWKS of each issuer (a failure is logged, and its tokens get 503 until the
        keys load) and follow the worker's revocations."""
        self._starts += 1
        if self._starts > 1:
            return
        self._wall = services.clock.readers()[1]
        self._cache = services.shared(self.cache_key, _cache_factory(self.settings.cache_size))
        revocations = services.shared(SHARED_KEY, lambda: Revocations(services))
        for issuer in self.issuers.values():
            url = issuer.jwks_url
            if url is not None:
                cache = services.shared("jwks:" + url, _jwks_factory(url, services))
                if cache not in self._jwks:
                    self._jwks.append(cache)
                issuer.jwks = cache
        # The first fetches run together: a slow provider delays the start once, not once per issuer.
        await asyncio.gather(*(cache.acquire(self.timing) for cache in self._jwks), revocations.start())
        self._revocations = revocations

    async def close(self) -> None:
        self._starts -= 1
        if self._starts > 0:
            return
        self._starts = 0
        jwks, self._jwks = self._jwks, []
        for cache in jwks:
            await cache.release()

    def verify(self, credential: str) -> Verdict | Awaitable[Verdict]:
        now = self._wall()
        slot = token_key(credential)
        hit = self._cache.get(slot, now)
        if hit is not None:
            source = hit.source
            if source is None or (source.generation == hit.generation and source.current() is not None):
                return self._not_revoked(hit.jti, hit.principal)
            self._cache.discard(slot)  # verified by keys that changed since: verify again
        return self._verify_new(credential, slot, now, True)

    def _not_revoked(self, jti: str | None, principal: Principal) -> Verdict:
        if jti is None:
            return principal
        revocations = self._revocations
        if revocations is None or not revocations.usable():
            return REVOCATIONS_UNAVAILABLE
        return REVOKED if revocations.is_revoked(jti) else principal

    def _verify_new(self, token: str, slot: CacheKey, now: float, may_refetch: bool) -> Verdict | Awaitable[Verdict]:
        if len(token) > MAX_TOKEN_CHARS:
            return MALFORMED
        parts = token.split(".")
        if len(parts) != 3:
            return MALFORMED
        try:
            header = orjson.loads(b64url_decode(parts[0]))
            payload = orjson.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except ValueError:  # orjson.JSONDecodeError and binascii.Error are ValueErrors
            return MALFORMED
        if not isinstance(header, dict) or not isinstance(payload, dict) or "crit" in header:
            return MALFORMED  # crit: an extension this verifier does not implement (RFC 7515 4.1.11)
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or (kid is not None and not isinstance(kid, str)):
            return MALFORMED
        iss = payload.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            return BAD_ISSUER
        if alg not in issuer.algorithms:
            return BAD_ALGORITHM  # "none" among them: it is in no list
        source = issuer.jwks
        keys = issuer.static if source is None else source.current()
        key = keys.find(kid, alg) if keys is not None else None
        if key is None:
            pending = source.refetch() if source is not None and may_refetch else None
            if pending is not None:
                return self._after_refetch(pending, token, slot)
            # No keys at all: a JWKS never loaded, stale, or not started (fail closed).
            return KEYS_UNAVAILABLE if keys is None else KID_UNKNOWN
        if not key.accepts(alg):
            return BAD_ALGORITHM  # e.g. HS256 naming an RSA key: a key verifies its own family only
        signing_input = token[: len(parts[0]) + len(parts[1]) + 1].encode()
        if not key.verify(alg, signature, signing_input):
            return BAD_SIGNATURE
        return self._claims(issuer, payload, slot, now, source)

    async def _after_refetch(self, pending: asyncio.Future[None], token: str, slot: CacheKey) -> Verdict:
        # Shielded: a request that gives up must not cancel the fetch others wait for.
        await asyncio.shield(pending)
        verdict = self._verify_new(token, slot, self._wall(), False)
        if isinstance(verdict, (Principal, AuthFailure)):
            return verdict
        return await verdict  # not reached: no second refetch

    def _claims(
        self, issuer: CompiledIssuer, payload: dict[str, object], slot: CacheKey, now: float, source: JwksCache | None
    ) -> Verdict:
        leeway = self.leeway
        exp = payload.get("exp")
        if not _number(exp):
            return BAD_CLAIMS  # exp is required: a token that never expires is not accepted
        expires = float(exp) + leeway  # type: ignore[arg-type]  # a number, checked above
        if now >= expires:
            return EXPIRED
        for name in ("nbf", "iat"):
            value = payload.get(name)
            if value is not None:
                if not _number(value):
                    return BAD_CLAIMS
                if float(value) > now + leeway:  # type: ignore[arg-type]
                    return NOT_YET_VALID
        if issuer.audiences.isdisjoint(audiences_of(payload.get("aud"))):
            return BAD_AUDIENCE
        jti = payload.get("jti")
        if jti is not None and not isinstance(jti, str):
            return BAD_CLAIMS
        principal = issuer.principal(payload, jti)
        if principal is None:
            return BAD_CLAIMS
        verdict = self._not_revoked(jti, principal)
        if verdict is principal:
            generation = 0 if source is None else source.generation
            self._cache.put(slot, _Verified(principal, jti, source, generation), expires)
        return verdict
