"""Revoked tokens, known to every worker of every instance within a second.

Whoever revokes a token (the built-in OAuth server's ``/oauth/revoke``, an admin command)
calls :func:`publish_revocation`: the token's ``jti`` is added, with the token's expiry, to
a set in the state backend (so a worker that starts later loads it) and published on
:data:`REVOCATION_CHANNEL` (so running workers learn it at once). Each worker keeps one
:class:`Revocations` (``services.shared(SHARED_KEY, ...)``): it subscribes first, then loads
the set, so nothing revoked in between is missed; a revoked ``jti`` is then a dictionary
lookup on every token, cached or not.

Fail closed: until the set is loaded, and when the subscription has been lost for more than
:data:`MAX_STALENESS` seconds (a revocation could be missed), a token that carries a ``jti``
cannot be checked and is refused with 503. Tokens without a ``jti`` cannot be revoked and
do not depend on it. Entries expire with their token: a revoked token that expired is
refused for being expired anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from bastion.state.interface import Script, ScriptArg, ScriptResult, ScriptStore, StateBackend

if TYPE_CHECKING:
    from bastion.services import Services

log = logging.getLogger("bastion.auth.revocations")

#: Pub/sub channel of revocations (the backend adds its key prefix).
REVOCATION_CHANNEL = "auth:revocations"
#: State key of the revoked set: jti -> the token's expiry (Unix seconds).
REVOCATION_KEY = "auth:revoked"
#: Key of the worker-wide :class:`Revocations` in ``Services.shared``.
SHARED_KEY = "auth:revocations"
#: Seconds a worker keeps trusting its set after losing the subscription; past that, tokens
#: with a ``jti`` are refused (503) until it is back (the "within 1 s" promise).
MAX_STALENESS = 1.0
#: Pause before resubscribing after a failure, doubled up to MAX_RETRY.
FIRST_RETRY = 0.1
MAX_RETRY = 2.0

# -- the set in the state backend: a sorted set in Redis, a JSON map in memory -----------------

_ADD_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not current) or tonumber(current) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(last[2])) + 1)
return 1
"""

_LIST_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES')
"""


def _load_map(store: ScriptStore, key: str, now: float) -> dict[str, float]:
    raw = store.get(key)
    found = orjson.loads(raw) if raw else {}
    return {str(j): float(e) for j, e in found.items() if float(e) > now}


def _add_local(store: ScriptStore, keys: Sequence[str], args: Sequence[ScriptArg]) -> ScriptResult:
    jti, expires, now = str(args[0]), float(args[1]), float(args[2])
    revoked = _load_map(store, keys[0], now)
    revoked[jti] = max(expires, revoked.get(jti, expires))
    # The memory backend's TTL runs on its own clock: only the length matters here.
    store.set(keys[0], orjson.dumps(revoked), ttl=math.ceil(max(revoked.values()) - now) + 1)
    return 1


def _list_local(store: ScriptStore, keys: Sequence[str], args: Sequence[ScriptArg]) -> ScriptResult:
    out: list[int | bytes | None] = []
    for jti, expires in _load_map(store, keys[0], float(args[0])).items():
        out += [jti.encode(), repr(expires).encode()]
    return out


ADD_SCRIPT = Script("auth_revoke", _ADD_LUA, _add_local)
LIST_SCRIPT = Script("auth_revoked", _LIST_LUA, _list_local)


async def publish_revocation(state: StateBackend, jti: str, expires_at: float, now: float) -> None:
    """Revoke the token ``jti`` (which expires at ``expires_at``, Unix seconds) everywhere:
    recorded for workers that start later, then announced to running ones. Raises
    :class:`~bastion.errors.DependencyUnavailable` when the backend cannot be reached (the
    revocation did not happen: say so to whoever asked)."""
    if not jti:
        raise ValueError("a revocation needs the token's jti")
    if expires_at <= now:
        return  # an expired token is refused anyway
    await state.run(ADD_SCRIPT, [REVOCATION_KEY], [jti, repr(float(expires_at)), repr(float(now))])
    await state.publish(REVOCATION_CHANNEL, orjson.dumps({"jti": jti, "exp": expires_at}))


async def load_revoked(state: StateBackend, now: float) -> dict[str, float]:
    """Every revoked jti that has not expired, with its expiry."""
    result = await state.run(LIST_SCRIPT, [REVOCATION_KEY], [repr(float(now))])
    items = result if isinstance(result, list) else []
    out: dict[str, float] = {}
    for i in range(0, len(items) - 1, 2):
        jti, expires = items[i], items[i + 1]
        if isinstance(jti, bytes) and isinstance(expires, bytes):
            out[jti.decode()] = float(expires)
    return out


class Revocations:
    """A worker's view of the revoked set, kept current by the subscription."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._revoked: dict[str, float] = {}
        #: Whether the set was loaded at least once.
        self.loaded = False
        # Monotonic time the subscription was lost (None while it is up).
        self._lost_at: float | None = None
        self._prune_at = 1024
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()

    async def start(self) -> None:
        """Subscribe and load (once per worker; later calls wait for the first attempt)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow(), name="auth revocations")
        await self._first.wait()

    def usable(self) -> bool:
        """Whether the set can be trusted now (see the module's docstring)."""
        if not self.loaded:
            return False
        lost = self._lost_at
        return lost is None or self._services.clock.monotonic() - lost <= MAX_STALENESS

    def is_revoked(self, jti: str) -> bool:
        return jti in self._revoked

    def __len__(self) -> int:
        return len(self._revoked)

    def _apply(self, message: bytes) -> None:
        try:
            data = orjson.loads(message)
            jti, expires = data["jti"], float(data["exp"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed revocation message")
            return
        if isinstance(jti, str) and jti:
            self._revoked[jti] = expires
            if len(self._revoked) >= self._prune_at:
                now = self._services.clock.wall()
                self._revoked = {j: e for j, e in self._revoked.items() if e > now}
                self._prune_at = max(1024, 2 * len(self._revoked))

    async def _follow(self) -> None:
        state = self._services.state
        clock = self._services.clock
        retry = FIRST_RETRY
        while True:
            try:
                subscription = await state.subscribe(REVOCATION_CHANNEL)
                try:
                    # Load after subscribing: a revocation published in between is in one or the
                    # other (or both), never in neither.
                    loaded = await load_revoked(state, clock.wall())
                    self._revoked.update(loaded)
                    self.loaded = True
                    self._lost_at = None
                    self._first.set()
                    retry = FIRST_RETRY
                    async for message in subscription:
                        self._apply(message)
                finally:
                    await subscription.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("revocations: %s; retrying in %.1fs (tokens with a jti are refused if this lasts)",
                            exc, retry)
            if self._lost_at is None:
                self._lost_at = clock.monotonic()
            self._first.set()
            await asyncio.sleep(retry)
            retry = min(MAX_RETRY, retry * 2)

    async def aclose(self) -> None:
        """Called with the worker's services."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
