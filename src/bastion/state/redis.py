"""The redis backend: state shared by every worker of every instance, through Redis.

One connection pool per worker (on the worker's event loop), created when the worker
starts. Each method is one round trip: counters with expiry and scripts run as Lua
(``EVALSHA``), so several commands of one operation are never split over the network.

A command that cannot complete within ``timeout`` (Redis down, unreachable, too slow)
raises :class:`~bastion.errors.DependencyUnavailable`, never a hang: the stage's
``failure_mode`` then decides (closed: 503). A dead pooled connection (after a Redis
restart) is replaced and the command retried once, so the first request after a recovery
does not fail; a command that timed out is not retried, so nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from bastion.config.model import redact_url
from bastion.errors import DependencyUnavailable
from bastion.state.interface import (
    Script,
    ScriptArg,
    ScriptResult,
    StateBackend,
    Subscription,
    Value,
    validate_ttl,
)

#: INCRBY, and PEXPIRE on the counter this call created (a key without expiry gets one:
#: a counter must never outlive its window because a PEXPIRE was lost).
_INCR = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""


def _ms(ttl: float | None) -> int | None:
    validate_ttl(ttl)
    # Redis expiries are whole milliseconds; round up so a tiny TTL is not "no expiry".
    return None if ttl is None else max(1, int(ttl * 1000 + 0.999))


class RedisBackend(StateBackend):
    """State in Redis at ``url``; ``timeout`` bounds each command (connect included)."""

    shared = True

    def __init__(self, url: str, *, timeout: float, key_prefix: str = "bastion:", max_connections: int = 64) -> None:
        self.where = redact_url(url)
        self.prefix = key_prefix
        # A blocking pool: beyond max_connections a command waits (up to ``timeout``) for a
        # connection instead of failing at once, so a burst of requests is not a burst of 503s.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            decode_responses=False,
        )
        self._redis: Redis = Redis.from_pool(pool)
        self._incr = self._redis.register_script(_INCR)
        self._scripts: dict[str, AsyncScript] = {}

    def _unavailable(self, exc: Exception) -> DependencyUnavailable:
        # The message names the server without its password, and the error, not its traceback.
        return DependencyUnavailable(f"redis at {self.where} is unavailable: {type(exc).__name__}: {exc}")

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except ResponseError:
            raise  # a wrong command or script: a bug to see, not an outage
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        ms = _ms(ttl)
        value = await self._call(self._incr(keys=[self.prefix + key], args=[amount, "" if ms is None else ms]))
        return int(value)

    async def get(self, key: str) -> bytes | None:
        value = await self._call(self._redis.get(self.prefix + key))
        return None if value is None else bytes(value)

    async def set(self, key: str, value: Value, ttl: float | None = None) -> None:
        if isinstance(value, bool):
            raise TypeError("a boolean is not a state value; store 1 or 0")
        await self._call(self._redis.set(self.prefix + key, value, px=_ms(ttl)))

    async def delete(self, key: str) -> bool:
        return bool(await self._call(self._redis.delete(self.prefix + key)))

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[ScriptArg] = ()) -> ScriptResult:
        compiled = self._scripts.get(script.lua)
        if compiled is None:
            compiled = self._scripts[script.lua] = self._redis.register_script(script.lua)
        result: ScriptResult = await self._call(compiled(keys=[self.prefix + k for k in keys], args=list(args)))
        return result

    async def publish(self, channel: str, message: bytes) -> None:
        await self._call(self._redis.publish(self.prefix + channel, message))

    async def subscribe(self, channel: str) -> Subscription:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await self._call(pubsub.subscribe(self.prefix + channel))
        except BaseException:
            await pubsub.aclose()
            raise
        return _RedisSubscription(self, pubsub)

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()


class _RedisSubscription(Subscription):
    def __init__(self, backend: RedisBackend, pubsub: PubSub) -> None:
        self._backend = backend
        self._pubsub = pubsub
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while not self._closed:
            try:
                # Waits without the command timeout: a quiet channel is not an outage.
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            except (RedisError, OSError) as exc:
                if self._closed:
                    return
                raise self._backend._unavailable(exc) from None
            if message is not None and message.get("type") == "message":
                yield bytes(message["data"])

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._pubsub.aclose()
