"""The redis backend: state shared by every worker of every instance, through Redis.

Each operation is one command: counters with expiry and scripts run as Lua (``EVALSHA``),
so the steps of one operation are never split over the network. They go through a lean
client on the worker's event loop (:mod:`bastion.state.resp`): one connection per worker,
the commands that concurrent requests issue in the same turn of the event loop written
together as one pipeline, replies matched as they arrive. Through the gateway at 32
connections that costs about 15-20 µs of gateway CPU per command; redis-py, even
pipelined the same way, cost about 70 (docs/benchmarks.md). redis-py still serves
publish/subscribe, which is not on the request path.

A command that cannot complete within ``timeout`` (Redis down, unreachable, too slow)
raises :class:`~bastion.errors.DependencyUnavailable`, never a hang: the stage's
``failure_mode`` then decides (closed: 503). A connection Redis closed (a restart) is
noticed when it closes and opened again by the next command, so the first request after a
recovery does not fail; a command that timed out is not retried, so nothing is counted twice.
A script Redis lost (a restart, ``SCRIPT FLUSH``, a replica promoted) is sent itself
(``EVAL``) by the same request, whose answer is then as if nothing had been lost.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any
from urllib.parse import quote

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from bastion.config.model import redact_url
from bastion.errors import DependencyUnavailable
from bastion.state.cluster import SCHEME as CLUSTER_SCHEME
from bastion.state.cluster import hash_tagged, moved_to, parse_cluster_url
from bastion.state.interface import (
    PreparedScript,
    Script,
    ScriptArg,
    ScriptResult,
    StateBackend,
    Subscription,
    Value,
    validate_ttl,
)
from bastion.state.resp import RedisGone, Reply, RespConnection, bulk
from bastion.state.sentinel import SCHEME as SENTINEL_SCHEME
from bastion.state.sentinel import parse_sentinel_url

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
        #: On a cluster the prefix is a hash tag: every key in one slot (``cluster.py``).
        self.cluster = url.startswith(CLUSTER_SCHEME + "://")
        self.prefix = hash_tagged(key_prefix) if self.cluster else key_prefix
        self._conn = RespConnection(url, timeout, self.prefix if self.cluster else "")
        # redis-py, for publish/subscribe only (each subscription holds a connection of its
        # own). A blocking pool: beyond max_connections one waits (up to ``timeout``).
        #: The Sentinels' own clients (closed with the backend), for a redis+sentinel URL.
        self._sentinel: Sentinel | None = None
        self._redis: Redis
        if url.startswith(SENTINEL_SCHEME + "://"):
            self._sentinel, self._redis = _sentinel_client(url, timeout=timeout, max_connections=max_connections)
        else:
            pool = BlockingConnectionPool.from_url(
                _first_node(url) if self.cluster else url,
                max_connections=max_connections,
                timeout=timeout,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
                decode_responses=False,
            )
            self._redis = Redis.from_pool(pool)
        self._shas: dict[str, str] = {}
        self._incr_sha = self._sha(_INCR)

    def _sha(self, lua: str) -> str:
        """What EVALSHA names ``lua`` by (loaded into Redis on its first NOSCRIPT)."""
        sha = self._shas.get(lua)
        if sha is None:
            sha = self._shas[lua] = hashlib.sha1(lua.encode(), usedforsecurity=False).hexdigest()
        return sha

    async def _command(
        self,
        args: tuple[Any, ...],
        lua: str | None = None,
        moved: bool = False,
        sent: asyncio.Future[Reply] | None = None,
    ) -> Any:
        """One command's reply; ``lua`` is the script an EVALSHA runs, sent itself if Redis
        lost it; ``moved``: sent again after a cluster's ``MOVED`` (a second one is an outage);
        ``sent``: the reply of ``args`` already queued, encoded beforehand (:meth:`run_prepared`)."""
        conn = self._conn
        try:
            try:
                return await (conn.command(args) if sent is None else sent)
            except NoScriptError:
                if lua is None:
                    raise
            except ResponseError as exc:
                if not self.cluster:
                    raise
                self._follow_cluster(exc, moved)
                return await self._command(args, lua, True)  # not run where it was refused: once more, there
            # Redis lost its scripts (a restart, SCRIPT FLUSH, a replica promoted): the same
            # request sends the script itself. EVAL runs it and caches it for the next EVALSHA,
            # in one round trip; a SCRIPT LOAD then EVALSHA would take two, and a second flush
            # between them would make the rerun fail. A script Redis cannot compile raises its
            # ResponseError here: a bug, not an outage.
            return await self._command(("EVAL", lua, *args[2:]), None, moved)
        except ResponseError:
            raise
        except OSError as exc:
            raise self._unavailable(exc) from None

    def _follow_cluster(self, exc: ResponseError, moved: bool) -> None:
        """A cluster's refusal: ``MOVED`` sends the connection to the master it names (the
        caller sends the command again, once: a second ``MOVED`` is an outage); a cluster that
        cannot serve the slot (``CLUSTERDOWN``, ``TRYAGAIN``) is unavailable; anything else is
        the bug it was."""
        message = str(exc)
        target = moved_to(message)
        if target is not None and not moved:
            self._conn.redirect(*target)
            return
        if target is not None or message.startswith(("CLUSTERDOWN", "TRYAGAIN")):
            raise self._unavailable(RedisGone(message.split("\n")[0]))
        raise exc

    def _unavailable(self, exc: Exception) -> DependencyUnavailable:
        # The message names the server without its password, and the error, not its traceback.
        detail = str(exc) if isinstance(exc, RedisGone) else f"{type(exc).__name__}: {exc}"
        return DependencyUnavailable(f"redis at {self.where} is unavailable: {detail}")

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
        return self._conn.writes

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        ms = _ms(ttl)
        args = ("EVALSHA", self._incr_sha, 1, self.prefix + key, amount, "" if ms is None else ms)
        return int(await self._command(args, _INCR))

    async def get(self, key: str) -> bytes | None:
        value = await self._command(("GET", self.prefix + key))
        return None if value is None else bytes(value)

    async def set(self, key: str, value: Value, ttl: float | None = None) -> None:
        if isinstance(value, bool):
            raise TypeError("a boolean is not a state value; store 1 or 0")
        ms = _ms(ttl)
        expiry: tuple[Any, ...] = () if ms is None else ("PX", ms)
        await self._command(("SET", self.prefix + key, value, *expiry))

    async def delete(self, key: str) -> bool:
        return bool(await self._command(("DEL", self.prefix + key)))

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[ScriptArg] = ()) -> ScriptResult:
        sha = self._sha(script.lua)
        command = ("EVALSHA", sha, len(keys), *(self.prefix + k for k in keys), *args)
        result: ScriptResult = await self._command(command, script.lua)
        return result

    def prepare(self, script: Script, key_count: int, tail: Sequence[ScriptArg]) -> PreparedScript:
        return _PreparedEvalsha(script, key_count, tail, self._sha(script.lua))

    def run_prepared(self, prepared: PreparedScript, keys: Sequence[str], first: ScriptArg) -> Awaitable[ScriptResult]:
        if not isinstance(prepared, _PreparedEvalsha):  # prepared by another backend
            return super().run_prepared(prepared, keys, first)
        # The EVALSHA as run() would encode it, but only the keys and ``first`` encoded now;
        # the same command as a tuple too, for a NOSCRIPT's EVAL or a cluster's MOVED.
        if len(keys) != prepared.key_count:  # a frame of another length would desynchronise the connection
            raise ValueError(f"{prepared.script.name} was prepared for {prepared.key_count} keys, given {len(keys)}")
        prefix = self.prefix
        named = [prefix + key for key in keys]
        frame = [prepared.head]
        for key in named:
            frame.append(bulk(key))
        frame.append(bulk(first))
        frame.append(prepared.frame_tail)
        sent = self._conn.send(b"".join(frame))
        args = ("EVALSHA", prepared.sha, prepared.key_count, *named, first, *prepared.tail)
        return self._command(args, prepared.script.lua, False, sent)

    async def publish(self, channel: str, message: bytes) -> None:
        await self._command(("PUBLISH", self.prefix + channel, message))

    async def subscribe(self, channel: str) -> Subscription:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await self._call(pubsub.subscribe(self.prefix + channel))
        except BaseException:
            await pubsub.aclose()
            raise
        return _RedisSubscription(self, pubsub)

    async def ping(self) -> None:
        await self._command(("PING",))

    async def close(self) -> None:
        await self._conn.close()
        await self._redis.aclose()
        if self._sentinel is not None:
            for client in self._sentinel.sentinels:
                await client.aclose()


class _PreparedEvalsha(PreparedScript):
    """A script's ``EVALSHA`` with its fixed parts in RESP: the array's length, the command,
    the SHA and the key count before the keys, the fixed arguments after ``now``."""

    __slots__ = ("frame_tail", "head", "sha")

    def __init__(self, script: Script, key_count: int, tail: Sequence[ScriptArg], sha: str) -> None:
        super().__init__(script, key_count, tail)
        self.sha = sha
        size = 3 + key_count + 1 + len(self.tail)
        self.head = b"*%d\r\n" % size + bulk("EVALSHA") + bulk(sha) + bulk(key_count)
        self.frame_tail = b"".join([bulk(arg) for arg in self.tail])


def _first_node(url: str) -> str:
    """A ``redis://`` URL of a cluster's first seed node (publish/subscribe: a message
    published on any node reaches the subscribers of every node)."""
    cluster = parse_cluster_url(url)
    host, port = cluster.seeds[0]
    credentials = ""
    if cluster.password is not None:
        credentials = f"{quote(cluster.username or '', safe='')}:{quote(cluster.password, safe='')}@"
    return f"redis://{credentials}{host}:{port}/0"


def _sentinel_client(url: str, *, timeout: float, max_connections: int) -> tuple[Sentinel, Redis]:
    """redis-py's client of the master the Sentinels of ``url`` name (asked again whenever it
    connects), for publish/subscribe, and the Sentinels' clients (to close)."""
    target = parse_sentinel_url(url)
    sentinel = Sentinel(list(target.sentinels), socket_timeout=timeout, socket_connect_timeout=timeout)
    client: Redis = sentinel.master_for(
        target.master,
        db=target.db,
        username=target.username,
        password=target.password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        max_connections=max_connections,
        decode_responses=False,
    )
    return sentinel, client


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
