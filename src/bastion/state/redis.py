"""The redis backend: state shared by every worker of every instance, through Redis.

One connection pool per worker (on the worker's event loop), created when the worker
starts. Each operation is one command: counters with expiry and scripts run as Lua
(``EVALSHA``), so the steps of one operation are never split over the network. And the
commands that concurrent requests issue in the same turn of the event loop go to Redis
together, as one pipeline on one connection (:class:`_Batcher`): redis-py costs about
70-100 µs of CPU per command sent alone, about 20 µs per command in a pipeline of 32.

A command that cannot complete within ``timeout`` (Redis down, unreachable, too slow)
raises :class:`~bastion.errors.DependencyUnavailable`, never a hang: the stage's
``failure_mode`` then decides (closed: 503). A dead pooled connection (after a Redis
restart) is replaced and the command retried once, so the first request after a recovery
does not fail; a command that timed out is not retried, so nothing is counted twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

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


#: Most commands sent in one pipeline; a larger burst is split (replies are read in order,
#: so one huge pipeline would delay the first request's answer behind the last one's).
MAX_BATCH = 256

#: One command: its arguments, the future its caller awaits, and for EVALSHA the script
#: source (to load it when Redis answers NOSCRIPT, after a restart or SCRIPT FLUSH).
_Queued = tuple[tuple[Any, ...], "asyncio.Future[Any]", str | None]


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
        self._batcher = _Batcher(self)
        self._shas: dict[str, str] = {}
        self._incr_sha = self._sha(_INCR)

    def _sha(self, lua: str) -> str:
        """What EVALSHA names ``lua`` by (loaded into Redis on its first NOSCRIPT)."""
        sha = self._shas.get(lua)
        if sha is None:
            sha = self._shas[lua] = str(self._redis.register_script(lua).sha)
        return sha

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

    @property
    def round_trips(self) -> int:
        """Pipelines sent so far (for tests and diagnostics)."""
        return self._batcher.round_trips

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        ms = _ms(ttl)
        args = ("EVALSHA", self._incr_sha, 1, self.prefix + key, amount, "" if ms is None else ms)
        return int(await self._batcher.send(args, _INCR))

    async def get(self, key: str) -> bytes | None:
        value = await self._batcher.send(("GET", self.prefix + key))
        return None if value is None else bytes(value)

    async def set(self, key: str, value: Value, ttl: float | None = None) -> None:
        if isinstance(value, bool):
            raise TypeError("a boolean is not a state value; store 1 or 0")
        ms = _ms(ttl)
        expiry: tuple[Any, ...] = () if ms is None else ("PX", ms)
        await self._batcher.send(("SET", self.prefix + key, value, *expiry))

    async def delete(self, key: str) -> bool:
        return bool(await self._batcher.send(("DEL", self.prefix + key)))

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[ScriptArg] = ()) -> ScriptResult:
        sha = self._sha(script.lua)
        command = ("EVALSHA", sha, len(keys), *(self.prefix + k for k in keys), *args)
        result: ScriptResult = await self._batcher.send(command, script.lua)
        return result

    async def publish(self, channel: str, message: bytes) -> None:
        await self._batcher.send(("PUBLISH", self.prefix + channel, message))

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
        await self._batcher.close()
        await self._redis.aclose()


class _Batcher:
    """Sends the commands queued during one turn of the event loop as one pipeline.

    A caller queues its command and awaits a future; the first command of a turn schedules
    a flush with ``call_soon``, which runs after every callback already due -- so requests
    that became ready together share one write and one read on one pooled connection. The
    pipeline is not a transaction: each command (a Lua script for anything multi-step) is
    atomic on its own, which is all the interface promises.
    """

    def __init__(self, backend: RedisBackend) -> None:
        self._backend = backend
        self._queued: list[_Queued] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.round_trips = 0

    def send(self, args: tuple[Any, ...], lua: str | None = None) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._flush)
        self._queued.append((args, future, lua))
        return future

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        for start in range(0, len(queued), MAX_BATCH):
            task = asyncio.get_running_loop().create_task(self._execute(queued[start : start + MAX_BATCH]))
            # Held until done (the loop keeps only weak references to tasks).
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _execute(self, batch: list[_Queued]) -> None:
        try:
            replies = await self._pipeline([args for args, _, _ in batch])
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                # Redis lost its scripts (a restart, SCRIPT FLUSH): load them, run those again.
                refused: dict[str, ResponseError] = {}
                for lua in {batch[i][2] for i in missing}:
                    if lua is not None:
                        try:
                            await self._backend._redis.script_load(lua)
                        except ResponseError as exc:  # a script Redis cannot compile: a bug
                            refused[lua] = exc
                rerun = [i for i in missing if batch[i][2] not in refused]
                for i in missing:
                    lua = batch[i][2]
                    if lua in refused:
                        replies[i] = refused[lua]
                again = await self._pipeline([batch[i][0] for i in rerun]) if rerun else []
                for i, reply in zip(rerun, again, strict=True):
                    replies[i] = reply
        except (RedisError, OSError) as exc:
            for _, future, _ in batch:
                if not future.done():
                    # One exception object per caller: each raise writes its own traceback.
                    future.set_exception(self._backend._unavailable(exc))
            return
        except BaseException as exc:  # cancelled at shutdown, or a bug: never leave a caller hanging
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(DependencyUnavailable(f"redis command not completed: {exc!r}"))
            raise
        for (_, future, _), reply in zip(batch, replies, strict=True):
            if future.done():  # the caller gave up (its request was cancelled)
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)  # a ResponseError: a wrong command or script
            else:
                future.set_result(reply)

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        self.round_trips += 1
        pipe = self._backend._redis.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def close(self) -> None:
        """Let the commands already queued or in flight finish."""
        if self._queued:
            self._flush()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


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
