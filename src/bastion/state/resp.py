"""A lean Redis client on the worker's event loop: one connection, commands pipelined.

What the redis backend sends on the request path (counters, scripts, get/set) goes through
here instead of redis-py, whose per-command machinery (a pool checkout, response
callbacks, an ``asyncio.Lock`` and a task per pipeline) cost the gateway about 70 µs of CPU
per request at 32 connections; this costs the RESP encoding, one write per batch and the
parsing of the replies as they arrive (docs/benchmarks.md, "Redis through the gateway").

:meth:`RespConnection.command` queues a command and returns the future of its reply; the
commands queued in one turn of the event loop are written together, once. Batches do not
wait for each other: Redis answers in order on one connection, so replies are matched to
commands by position, and a new batch may go while earlier ones are still being answered.
The connection opens on first use (``AUTH`` and ``SELECT`` from the URL first); a lost one
is opened again by the next batch. A command not answered within ``timeout`` fails with
everything still pending on the connection, which is dropped (later replies could no
longer be matched to commands); so a timed-out command is never
retried. Error replies become :class:`redis.exceptions.ResponseError` (``NOSCRIPT`` one
:class:`redis.exceptions.NoScriptError`), a wrong command or script being a bug to see, not
an outage; failures to reach Redis become :class:`OSError` subclasses for the backend to
report.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from redis.exceptions import NoScriptError, ResponseError

from bastion.state.cluster import SCHEME as CLUSTER_SCHEME
from bastion.state.cluster import parse_cluster_url
from bastion.state.sentinel import SCHEME as SENTINEL_SCHEME
from bastion.state.sentinel import SentinelURL, parse_sentinel_url

#: One reply: an integer, bytes (bulk or status), None (null), a list of replies (array),
#: or the error Redis answered.
Reply = Any

_CRLF = b"\r\n"


class RedisGone(ConnectionError):
    """The connection to Redis failed, closed, or a command was not answered in time."""


def encode(args: Sequence[Any]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    return b"".join([b"*%d\r\n" % len(args), *[bulk(arg) for arg in args]])


def bulk(arg: Any) -> bytes:
    """One argument as a RESP bulk string: a piece of a command :func:`encode` writes (for a
    command whose other pieces are encoded once, see ``RedisBackend.prepare``)."""
    # Exact types first, by identity: a rate limit's EVALSHA has ten arguments per request,
    # and isinstance with a union was most of what encoding them cost (docs/benchmarks.md).
    kind = type(arg)
    if kind is str:
        data = arg.encode()
    elif kind is int:
        data = b"%d" % arg
    elif kind is bytes:
        data = arg
    else:
        data = _encode_other(arg)
    return b"$%d\r\n%b\r\n" % (len(data), data)


def _encode_other(arg: Any) -> bytes:
    """An argument of a rarer type (a float, a subclass of bytes, str or int); a boolean or
    anything else is refused (a bug to see, not a value to guess)."""
    if isinstance(arg, bytes):
        return bytes(arg)
    if isinstance(arg, str):
        return str(arg).encode()
    if isinstance(arg, bool):
        raise TypeError("cannot send bool to Redis")
    if isinstance(arg, int):
        return b"%d" % int(arg)  # an IntEnum's number, not its repr
    if isinstance(arg, float):
        return repr(float(arg)).encode()
    raise TypeError(f"cannot send {type(arg).__name__} to Redis")


class IncompleteReply(Exception):
    """The buffer holds only part of the next reply."""


_INCOMPLETE = IncompleteReply()


def _error(message: bytes) -> ResponseError:
    text = message.decode(errors="replace")
    if text.startswith("NOSCRIPT"):
        return NoScriptError(text)
    return ResponseError(text)


def parse(buf: bytes | bytearray, pos: int) -> tuple[Reply, int]:
    """The reply that starts at ``pos`` and where the next one starts; raises
    :class:`IncompleteReply` when the buffer does not hold all of it yet."""
    end = buf.find(_CRLF, pos)
    if end < 0:
        raise _INCOMPLETE
    kind = buf[pos]
    line = buf[pos + 1 : end]
    pos = end + 2
    if kind == 58:  # ':' integer
        return int(line), pos
    if kind == 36:  # '$' bulk string
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _INCOMPLETE
        return bytes(buf[pos : pos + size]), pos + size + 2
    if kind == 43:  # '+' status
        return bytes(line), pos
    if kind == 45:  # '-' error
        return _error(bytes(line)), pos
    if kind == 42:  # '*' array
        count = int(line)
        if count < 0:
            return None, pos
        items: list[Reply] = []
        size = len(buf)
        for _ in range(count):
            if pos < size and buf[pos] == 58:
                # An integer item read here, not in a call of its own: a rate limit's
                # answer is an array of integers, on every request.
                end = buf.find(_CRLF, pos)
                if end < 0:
                    raise _INCOMPLETE
                items.append(int(buf[pos + 1 : end]))
                pos = end + 2
            else:
                item, pos = parse(buf, pos)
                items.append(item)
        return items, pos
    raise RedisGone(f"unexpected reply type from Redis: {bytes([kind])!r}")


async def _ask_sentinels(target: SentinelURL) -> tuple[str, int]:
    """The master's address, from the first Sentinel that knows it (in the URL's order)."""
    problems: list[str] = []
    for host, port in target.sentinels:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            problems.append(f"{host}:{port}: {exc.strerror or exc}")
            continue
        try:
            writer.write(encode(("SENTINEL", "get-master-addr-by-name", target.master)))
            buf = bytearray()
            while True:
                chunk = await reader.read(4096)
                if not chunk:
                    raise RedisGone("the Sentinel closed the connection")
                buf += chunk
                try:
                    reply, _ = parse(buf, 0)
                    break
                except IncompleteReply:
                    continue
        except (OSError, RedisGone) as exc:
            problems.append(f"{host}:{port}: {exc}")
            continue
        finally:
            writer.close()
        if isinstance(reply, list) and len(reply) == 2 and all(isinstance(p, bytes) for p in reply):
            return reply[0].decode(), int(reply[1])
        problems.append(f"{host}:{port} does not know a master named {target.master!r}")
    raise RedisGone(f"no Sentinel gave the address of the master {target.master!r} ({'; '.join(problems)})")


async def _ask_node(host: str, port: int, commands: Sequence[Sequence[Any]]) -> list[Reply]:
    """The replies of one node to ``commands``, on a connection of their own."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"".join(encode(c) for c in commands))
        buf = bytearray()
        replies: list[Reply] = []
        pos = 0
        while len(replies) < len(commands):
            try:
                reply, pos = parse(buf, pos)
            except IncompleteReply:
                chunk = await reader.read(65536)
                if not chunk:
                    raise RedisGone(f"{host}:{port} closed the connection") from None
                buf += chunk
                continue
            if isinstance(reply, ResponseError):
                raise RedisGone(f"{host}:{port} refused {commands[len(replies)][0]}: {reply}")
            replies.append(reply)
        return replies
    finally:
        writer.close()


async def _ask_cluster(seeds: Sequence[tuple[str, int]], tag: str, hello: Sequence[Sequence[Any]]) -> tuple[str, int]:
    """The address of the master holding ``tag``'s slot, from the first seed that answers (in
    the URL's order): commands sent there never meet a ``MOVED`` but after a failover."""
    problems: list[str] = []
    for host, port in seeds:
        try:
            *_, slot, slots = await _ask_node(host, port, [*hello, ("CLUSTER", "KEYSLOT", tag), ("CLUSTER", "SLOTS")])
        except (OSError, RedisGone) as exc:
            problems.append(f"{host}:{port}: {exc}")
            continue
        for start, end, master, *_ in slots:
            if start <= slot <= end:
                master_host = master[0].decode() if master[0] else host  # empty: the node that answered
                return master_host, int(master[1])
        problems.append(f"{host}:{port} knows no master of slot {slot}")
    raise RedisGone(f"no node of the cluster named the master of Bastion's keys ({'; '.join(problems)})")


#: A command written and not yet answered: the future its caller awaits, and the loop
#: time by which the answer must come.
_Pending = tuple["asyncio.Future[Reply]", float]


class RespConnection(asyncio.Protocol):
    """Redis at ``url`` (redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://),
    one connection, pipelined."""

    def __init__(self, url: str, timeout: float, cluster_tag: str = "") -> None:
        """``cluster_tag``: on a cluster, the hash tag of every key sent (whose master to use)."""
        self.timeout = timeout
        self._cluster_tag = cluster_tag
        parts = urlsplit(url)
        self._unix = unquote(parts.path) if parts.scheme == "unix" else None
        self._ssl = ssl.create_default_context() if parts.scheme == "rediss" else None
        self._hello: list[tuple[Any, ...]] = []
        #: Through Sentinel: the master's name and the Sentinels to ask for its address on
        #: every connection (so a failover's new master is found by the next one).
        self._sentinel: SentinelURL | None = None
        #: On a cluster: the seed nodes, tried in order after the node last connected to
        #: (the master a ``MOVED`` named, see :meth:`redirect`).
        self._seeds: tuple[tuple[str, int], ...] = ()
        #: The next connection goes where a ``MOVED`` said (not asked of the seeds).
        self._moved = False
        if parts.scheme == CLUSTER_SCHEME:
            cluster = parse_cluster_url(url)
            self._seeds = cluster.seeds
            self._host, self._port = cluster.seeds[0]
            user, password, db = cluster.username, cluster.password, ""
        elif parts.scheme == SENTINEL_SCHEME:
            self._sentinel = parse_sentinel_url(url)
            self._host, self._port = "", 0
            user, password, db = self._sentinel.username, self._sentinel.password, str(self._sentinel.db)
        else:
            self._host = parts.hostname or "127.0.0.1"
            self._port = parts.port or 6379
            user = unquote(parts.username) if parts.username else None
            password = unquote(parts.password) if parts.password is not None else None
            db = parts.path.strip("/") if self._unix is None else ""
        if password is not None:
            self._hello.append(("AUTH", user, password) if user else ("AUTH", password))
        if db and db != "0":
            self._hello.append(("SELECT", db))
        if self._sentinel is not None:
            # A Sentinel may name a master that has just been demoted: make sure.
            self._hello.append(("ROLE",))
        self._transport: asyncio.Transport | None = None
        #: Commands queued in this turn of the event loop, and their futures.
        self._out: list[bytes] = []
        self._out_futures: list[asyncio.Future[Reply]] = []
        self._opening: asyncio.Task[None] | None = None
        #: Batches waiting for the connection to open.
        self._waiting: list[tuple[bytes, list[asyncio.Future[Reply]]]] = []
        self._pending: deque[_Pending] = deque()
        self._buf = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        #: Batches written so far (one write each).
        self.writes = 0

    # -- sending -------------------------------------------------------------------------
    def command(self, args: Sequence[Any]) -> asyncio.Future[Reply]:
        """Queue one command; it is written with every other command queued in this turn
        of the event loop, in one write. The future gets its reply."""
        return self.send(encode(args))

    def send(self, frame: bytes) -> asyncio.Future[Reply]:
        """:meth:`command` for a command already in RESP (one array of bulk strings)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        if not self._out:
            loop.call_soon(self._flush)
        self._out.append(frame)
        self._out_futures.append(future)
        return future

    def _flush(self) -> None:
        if not self._out:
            return  # flushed already (by close)
        data, futures = b"".join(self._out), self._out_futures
        self._out, self._out_futures = [], []
        if self._closed:
            for future in futures:
                future.set_exception(RedisGone("the Redis client is closed"))
        elif self._transport is not None and self._opening is None:
            self._write(data, futures)
        else:
            self._waiting.append((data, futures))
            if self._opening is None:
                self._opening = asyncio.get_running_loop().create_task(self._open())

    def _write(self, data: bytes, futures: list[asyncio.Future[Reply]]) -> None:
        transport = self._transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        pending = self._pending
        for future in futures:
            pending.append((future, deadline))
        self.writes += 1
        transport.write(data)
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._check_deadline)

    async def _open(self) -> None:
        """Connect, then write the batches that waited for it (or fail them)."""
        try:
            await self._connect()
        except BaseException as exc:
            self._opening = None
            transport, self._transport = self._transport, None
            if transport is not None:
                transport.abort()
            if isinstance(exc, RedisGone):
                reason = str(exc)
            elif isinstance(exc, TimeoutError):
                reason = f"no connection within {self.timeout:g} s"
            else:
                reason = f"{type(exc).__name__}: {exc}"
            self._fail_waiting(reason)
            if not isinstance(exc, Exception):
                raise  # cancelled
            return
        self._opening = None
        if self._transport is None:
            self._fail_waiting("Redis closed the connection at once")
            return
        waiting, self._waiting = self._waiting, []
        for data, futures in waiting:
            self._write(data, futures)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            if self._sentinel is not None:
                self._host, self._port = await _ask_sentinels(self._sentinel)
            if self._unix is not None:
                await loop.create_unix_connection(lambda: self, self._unix)
            elif self._seeds:
                await self._connect_to_a_node()
            else:
                await loop.create_connection(
                    lambda: self, self._host, self._port, ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None,
                )
            if not self._hello:
                return
            futures = [loop.create_future() for _ in self._hello]
            self._write(b"".join([encode([a for a in c if a is not None]) for c in self._hello]), futures)
            for command, future in zip(self._hello, futures, strict=True):
                try:
                    reply = await future
                except ResponseError as exc:
                    raise RedisGone(f"Redis refused {command[0]}: {exc}") from None
                if command[0] == "ROLE" and not (isinstance(reply, list) and reply and reply[0] == b"master"):
                    raise RedisGone(f"the Sentinels named {self._host}:{self._port}, which is not a master")

    async def _connect_to_a_node(self) -> None:
        """The master of the cluster tag's slot: the one a ``MOVED`` named, else the one the
        seeds name (asked again on every connection, as Sentinels are)."""
        if not self._moved:
            hello = [c for c in self._hello if c[0] == "AUTH"]
            auth = [[a for a in c if a is not None] for c in hello]
            self._host, self._port = await _ask_cluster(self._seeds, self._cluster_tag, auth)
        self._moved = False
        await asyncio.get_running_loop().create_connection(lambda: self, self._host, self._port)

    def redirect(self, host: str, port: int) -> None:
        """A cluster node answered ``MOVED``: the next connection goes to ``host:port``. This
        one is dropped, failing the commands it still owes (none is sent again, so none runs
        twice)."""
        host = host or self._host
        if (host, port) == (self._host, self._port):
            return  # another command's MOVED got here first: the connection is going there
        self._host, self._port = host, port
        self._moved = True
        if self._transport is not None:
            self._drop(RedisGone(f"the cluster moved Bastion's keys to {host}:{port}"))

    def _fail_waiting(self, reason: str) -> None:
        waiting, self._waiting = self._waiting, []
        for _, futures in waiting:
            for future in futures:
                if not future.done():
                    future.set_exception(RedisGone(reason))

    # -- receiving -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._buf.clear()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        pending = self._pending
        try:
            while pos < len(buf):
                reply, pos = parse(buf, pos)
                if not pending:
                    raise RedisGone("Redis sent a reply to no command")
                future, _ = pending.popleft()
                if future.done():  # its caller gave up
                    continue
                if isinstance(reply, ResponseError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except IncompleteReply:
            pass
        except (RedisGone, ValueError) as exc:  # a stream we cannot follow any more
            self._drop(RedisGone(str(exc)))
            return
        del buf[:pos]
        # The deadline timer stays armed when nothing is pending: the next batch (on a busy
        # worker, the next request's) needs one anyway, and a timer made and cancelled per
        # batch was a cost of every request. When it fires it looks at what is pending then.

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail_pending(RedisGone(f"connection lost: {exc}" if exc else "Redis closed the connection"))

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._pending:
            return
        _, deadline = self._pending[0]
        loop = asyncio.get_running_loop()
        if loop.time() >= deadline:
            self._drop(RedisGone(f"no answer within {self.timeout:g} s"))
        else:
            self._timer = loop.call_at(deadline, self._check_deadline)

    def _drop(self, exc: RedisGone) -> None:
        """Give up on this connection: fail what it still owes, and close it."""
        transport, self._transport = self._transport, None
        self._fail_pending(exc)
        if transport is not None:
            transport.abort()

    def _fail_pending(self, exc: RedisGone) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, deque()
        self._buf.clear()
        for future, _ in pending:
            if not future.done():
                future.set_exception(RedisGone(str(exc)))

    async def close(self) -> None:
        """Let the commands already written be answered (within ``timeout``), then close."""
        if self._out:
            self._flush()
        self._closed = True
        if self._opening is not None:
            await asyncio.gather(self._opening, return_exceptions=True)
        if self._pending:
            await asyncio.gather(*(f for f, _ in list(self._pending)), return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
