"""Upstream side: pooled HTTP/1.1 connections, load balancing, health and circuit breaking.

One :class:`UpstreamPool` per service and worker. A request borrows a kept-alive
connection to the chosen target (or opens one), writes a head Bastion serialised itself
(so the upstream only ever sees Bastion's framing), and reads the response with llhttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from bastion.config.model import Upstream
from bastion.proxy.http import HOP_BY_HOP
from bastion.types import HeaderList

log = logging.getLogger("bastion.upstream")

_HOP_BY_HOP_BYTES = frozenset(name.encode("latin-1") for name in HOP_BY_HOP)


class UpstreamError(Exception):
    """The upstream could not give a response. ``status`` is what the client gets,
    ``kind`` labels the failure in metrics and logs."""

    def __init__(self, message: str, *, retryable: bool = False, status: int = 502, kind: str = "error") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.kind = kind


class UpstreamConnectError(UpstreamError):
    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable, kind="connect")


class UpstreamTimeout(UpstreamError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=504, kind="timeout")


class UpstreamUnavailable(UpstreamError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=503, kind="unavailable")


class UpstreamProtocolError(UpstreamError):
    def __init__(self, message: str) -> None:
        super().__init__(message, kind="protocol")


class TargetState:
    """One upstream address, its health and its circuit breaker (per worker)."""

    def __init__(self, url: str, weight: int, pool: UpstreamPool) -> None:
        parts = urlsplit(url)
        self.url = url
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        default_port = (parts.scheme == "https" and self.port == 443) or (parts.scheme == "http" and self.port == 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default_port else f"{host}:{self.port}"
        self.host_line = f"host: {self.host_header}\r\n"
        self.weight = weight
        self.pool = pool
        self.idle: deque[UpstreamConnection] = deque()
        self.active = 0
        self.healthy = True
        self._health_streak = 0
        self.failures = 0
        self.open_until = 0.0
        self.half_open_trial = False

    def available(self, now: float) -> bool:
        if not self.healthy:
            return False
        if self.open_until:
            if now < self.open_until:
                return False
            # Cooldown over: let exactly one trial request through (half-open).
            if self.half_open_trial:
                return False
        return True

    def record_success(self) -> None:
        self.failures = 0
        self.open_until = 0.0
        self.half_open_trial = False

    def record_failure(self, now: float) -> None:
        breaker = self.pool.config.circuit_breaker
        if not breaker.enabled:
            return
        self.failures += 1
        if self.open_until or self.failures >= breaker.failures:
            if not self.open_until:
                log.warning("circuit opened for upstream %s after %d failures", self.url, self.failures)
            self.open_until = now + breaker.cooldown
            self.half_open_trial = False

    def health_result(self, ok: bool) -> None:
        hc = self.pool.config.health_check
        if hc is None:
            return
        if ok == self.healthy:
            self._health_streak = 0
            return
        self._health_streak += 1
        needed = hc.healthy_threshold if ok else hc.unhealthy_threshold
        if self._health_streak >= needed:
            self.healthy = ok
            self._health_streak = 0
            log.warning("upstream %s is now %s", self.url, "healthy" if ok else "unhealthy")


class UpstreamPool:
    """The targets of one service, with their pooled connections."""

    def __init__(self, service: str, config: Upstream, ssl_context: ssl.SSLContext | None) -> None:
        self.service = service
        self.config = config
        self.ssl_context = ssl_context
        self.targets = [TargetState(t.url, t.weight, self) for t in config.targets]
        # Weighted round robin: each target appears `weight` times in the cycle.
        self._cycle = [t for t in self.targets for _ in range(t.weight)]
        self._single = self.targets[0] if len(self.targets) == 1 else None
        self._next = 0
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._sweep_idle()))
        if self.config.health_check is not None:
            for target in self.targets:
                self._tasks.append(loop.create_task(self._health_loop(target)))

    async def close(self) -> None:
        """Stop background work and close idle connections; busy ones close when released."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for target in self.targets:
            while target.idle:
                target.idle.pop().close()

    def choose(self, exclude: TargetState | None = None) -> TargetState:
        """Pick a target by the configured balancing; raise when none can take traffic."""
        single = self._single
        if single is not None and single.healthy and not single.open_until and exclude is None:
            return single
        now = time.monotonic()
        if self.config.balance == "least_connections":
            best: TargetState | None = None
            for t in self.targets:
                if t is exclude or not t.available(now):
                    continue
                if best is None or t.active * best.weight < best.active * t.weight:
                    best = t
            if best is None and exclude is not None and exclude.available(now):
                best = exclude
            if best is None:
                raise UpstreamUnavailable("no healthy upstream target")
            return self._take(best)
        cycle = self._cycle
        n = len(cycle)
        for _ in range(n):
            t = cycle[self._next % n]
            self._next += 1
            if t is not exclude and t.available(now):
                return self._take(t)
        if exclude is not None and exclude.available(now):
            return self._take(exclude)
        raise UpstreamUnavailable("no healthy upstream target")

    @staticmethod
    def _take(target: TargetState) -> TargetState:
        if target.open_until:
            target.half_open_trial = True
        return target

    @staticmethod
    def pooled(target: TargetState) -> UpstreamConnection | None:
        """A kept-alive connection to ``target``, if one is idle (no await needed)."""
        idle = target.idle
        while idle:
            conn = idle.pop()
            if conn.usable():
                conn.idle_since = 0.0
                return conn
            conn.close()
        return None

    async def acquire(self, target: TargetState, deadline: float, fresh: bool = False) -> UpstreamConnection:
        """A connection to ``target``: a pooled one (unless ``fresh``), or a new one."""
        conn = None if fresh else self.pooled(target)
        if conn is not None:
            return conn
        loop = asyncio.get_running_loop()
        timeout = min(self.config.timeouts.connect, max(0.001, deadline - time.monotonic()))
        ssl_ctx = self.ssl_context if target.scheme == "https" else None
        server_name = self.config.tls.server_name or target.host if ssl_ctx else None
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(target),
                    target.host,
                    target.port,
                    ssl=ssl_ctx,
                    server_hostname=server_name,
                )
        except TimeoutError:
            raise UpstreamConnectError(f"connect to {target.url} timed out", retryable=True) from None
        except ssl.SSLError as exc:
            raise UpstreamConnectError(
                f"TLS handshake with {target.url} failed: {exc.reason}", retryable=True
            ) from None
        except OSError as exc:
            raise UpstreamConnectError(
                f"connect to {target.url} failed: {exc.strerror or exc}", retryable=True
            ) from None
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Return a connection after a complete exchange, or close it."""
        target = conn.target
        if not self._closed and conn.reusable() and len(target.idle) < self.config.max_idle_connections:
            conn.idle_since = time.monotonic()
            conn.prepare_idle()
            target.idle.append(conn)
        else:
            conn.close()

    async def _sweep_idle(self) -> None:
        # Close connections unused for idle_timeout so the upstream is not the one to do it
        # (an upstream-side close racing a new request is what makes reuse fail).
        while True:
            await asyncio.sleep(min(5.0, self.config.idle_timeout / 2))
            limit = time.monotonic() - self.config.idle_timeout
            for target in self.targets:
                while target.idle and target.idle[0].idle_since < limit:
                    target.idle.popleft().close()

    async def _health_loop(self, target: TargetState) -> None:
        hc = self.config.health_check
        assert hc is not None  # only started when configured
        while True:
            ok = False
            try:
                deadline = time.monotonic() + hc.timeout
                conn = await self.acquire(target, deadline)
                head = (
                    f"GET {target.base_path}{hc.path} HTTP/1.1\r\n"
                    f"host: {target.host_header}\r\nuser-agent: bastion-health\r\n\r\n"
                )
                conn.begin("GET", time.monotonic() + hc.timeout, hc.timeout)
                conn.write(head.encode("latin-1"))
                conn.end_request()
                resp = await conn.response_head()
                await conn.read_body_into(None)
                ok = resp.status in hc.expected_status
                self.release(conn)
            except (UpstreamError, OSError):
                ok = False
            target.health_result(ok)
            await asyncio.sleep(hc.interval)


class ResponseHead:
    """An upstream response's status and end-to-end headers (hop-by-hop ones dropped).

    Headers stay bytes (``raw``, names lower-cased) until someone asks for ``headers``:
    a route without response stages forwards them without decoding and re-encoding.
    """

    __slots__ = ("_headers", "keep_alive", "raw", "status")

    def __init__(self, status: int, raw: list[tuple[bytes, bytes]], keep_alive: bool) -> None:
        self.status = status
        self.raw = raw
        self.keep_alive = keep_alive
        self._headers: HeaderList | None = None

    @property
    def headers(self) -> HeaderList:
        """The headers as text (latin-1), decoded once."""
        if self._headers is None:
            self._headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw]
        return self._headers


BodySink = Callable[[bytes], None]


class UpstreamListener:
    """Who gets an exchange's events in callback mode (the proxy's fast path).

    Callbacks are made outside the parser's own callbacks (once ``feed_data`` returned), so
    a listener may release the connection or start the next exchange on it.
    """

    def upstream_head(self, conn: UpstreamConnection) -> None:
        """The response head arrived (the body may be complete already: ``conn.complete``)."""

    def upstream_done(self, conn: UpstreamConnection) -> None:
        """The response body ended (only after ``upstream_head`` returned with it incomplete)."""

    def upstream_failed(self, conn: UpstreamConnection, exc: UpstreamError) -> None:
        """The exchange failed (timeout, connection lost, invalid response)."""


class _StrayBytes(Exception):
    """Raised in a parser callback: the upstream sent bytes after its complete response."""


class UpstreamConnection(asyncio.Protocol):
    """One connection to an upstream target; one exchange at a time.

    Two ways to follow an exchange: awaiting :meth:`response_head` and :meth:`wait_done`
    (futures), or giving :meth:`begin` an :class:`UpstreamListener` (plain callbacks, no
    event-loop round trip: the proxy's fast path).

    A connection is only reused when the exchange on it was unambiguous: an upstream that
    answered before it had the whole request, or that sent bytes outside a response, may
    read what is left of a request as the next one (or answer it), and that answer would go
    to whichever client borrows the connection next. Such a connection is closed instead.
    """

    def __init__(self, target: TargetState) -> None:
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self._parser: Any = None
        self._loop = asyncio.get_running_loop()
        self._head_fut: asyncio.Future[ResponseHead] | None = None
        self._done_fut: asyncio.Future[None] | None = None
        self._error: UpstreamError | None = None
        self.listener: UpstreamListener | None = None
        self._notify = 0
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._framed = False
        self._head: ResponseHead | None = None
        self._method = "GET"
        self._received = 0
        self._sink: BodySink | None = None
        self._pending: list[bytes] = []
        self._complete = False
        self._close_delimited = False
        self._lost = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timing = False
        self._timer_at = 0.0
        self._spare_parser: Any = None
        self._read_timeout = 30.0
        self._deadline = 0.0
        self._last_read = 0.0
        #: Reading is paused because the client is not taking the response as fast.
        self._read_paused = False
        #: The request is still being written (``begin`` until ``end_request``).
        self._sending = False
        #: The response head came before the upstream had the whole request: never reuse.
        self._early = False

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._parser is None:
            # Bytes nobody asked for (an idle connection): the upstream is confused; drop it.
            self.close()
            return
        self._received += len(data)
        self._last_read = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self._complete:
                self._fail(UpstreamProtocolError(f"invalid response from {self.target.url}: {exc}"))
                self.close()
                return
            # Bytes after the complete response (a second response, or garbage): the upstream
            # is out of step with us. The exchange stands; the connection is not reused.
            log.warning("upstream %s sent bytes after its response; connection closed", self.target.url)
            self.close()
        listener = self.listener
        if listener is not None and self._notify:
            if self._notify == 1:
                self._notify = 0
                listener.upstream_head(self)
            elif self._notify == 2:
                self._notify = 0
                listener.upstream_done(self)

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost finishes the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._kill_timer()
        if self._head is None and self._parser is not None and self._error is None:
            # An exchange was waiting for its response. A reused connection the upstream
            # closed before answering anything is safe to retry; one that answered part is not.
            retryable = self._received == 0
            self._fail(UpstreamError(f"{self.target.url} closed the connection before responding", retryable=retryable))
        elif self._head is not None and not self._complete:
            if self._close_delimited:
                self._finish()
            else:
                self._fail(UpstreamProtocolError(f"{self.target.url} closed the connection mid-response"))
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(UpstreamError("upstream connection lost while sending"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- httptools callbacks ----------------------------------------------------------
    def on_message_begin(self) -> None:
        if self._complete:
            raise _StrayBytes()  # stops the parser: feed_data raises, data_received decides

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if 100 <= status < 200:
            # Informational responses (100, 103) are not forwarded; wait for the final one.
            self._raw_headers = []
            return
        # One pass over the head: hop-by-hop headers are dropped here, once.
        headers: list[tuple[bytes, bytes]] = []
        tokens = b""
        for raw_name, raw_value in self._raw_headers:
            key = raw_name.lower()
            if key in _HOP_BY_HOP_BYTES:
                if key == b"connection":
                    tokens += raw_value + b","
                elif key == b"transfer-encoding":
                    self._framed = True
                continue
            if key == b"content-length":
                self._framed = True
            headers.append((key, raw_value))
        self._raw_headers = []
        if tokens and tokens.lower() not in (b"keep-alive,", b"close,"):
            named = {t.strip().lower() for t in tokens.split(b",")} - {b"", b"close", b"keep-alive"}
            if named:
                headers = [(k, v) for k, v in headers if k not in named]
        head = ResponseHead(status, headers, parser.should_keep_alive())
        self._head = head
        transport = self.transport
        if self._sending or (transport is not None and transport.get_write_buffer_size()):
            # Answered before the whole request was sent: whatever of it is still to come may
            # be read by the upstream as a request of its own.
            self._early = True
        self._close_delimited = self._method != "HEAD" and status not in (204, 304) and not self._framed
        if self._head_fut is not None and not self._head_fut.done():
            self._head_fut.set_result(head)
        elif self.listener is not None:
            self._notify = 1  # told once feed_data returns
        if self._method == "HEAD":
            # llhttp would wait for a body the Content-Length announces; a HEAD response has none.
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self._complete:
            raise _StrayBytes()  # a body after a HEAD response (llhttp reads the announced length)
        if self._sink is not None:
            self._sink(body)
        else:
            self._pending.append(body)

    def on_message_complete(self) -> None:
        if self._head is None:
            return  # end of an informational response
        self._finish()

    # -- used by the proxy ------------------------------------------------------------
    def usable(self) -> bool:
        return self.transport is not None and not self._lost and not self.transport.is_closing()

    def reusable(self) -> bool:
        return (
            self._complete
            and self.usable()
            and self._head is not None
            and self._head.keep_alive
            and not self._close_delimited
            and not self._early
        )

    def prepare_idle(self) -> None:
        if self._method != "HEAD":
            self._spare_parser = self._parser
        self._parser = None
        self._cancel_timer()

    def begin(
        self,
        method: str,
        deadline: float,
        read_timeout: float,
        listener: UpstreamListener | None = None,
        *,
        read_timer: bool = True,
    ) -> None:
        """Start an exchange: fresh parser state, and futures unless a listener is given."""
        if self._read_paused:
            self.resume_reading()  # an exchange is always read, whoever paused the last one
        # llhttp resets itself after a complete message; a HEAD exchange (whose announced
        # body never came) or a first use needs a new parser.
        parser = self._spare_parser
        self._parser = parser if parser is not None else httptools.HttpResponseParser(self)
        self._spare_parser = None
        self._method = method
        self.listener = listener
        self._notify = 0
        self._sending = True
        self._early = False
        # Both futures are created only by someone about to await them: a future made here
        # would be failed, unawaited, when the exchange breaks off before anyone waits for
        # its head (the client's upload fails or the client leaves), and asyncio would log
        # "Future exception was never retrieved" for an error nobody had to handle.
        self._head_fut = None
        self._done_fut = None
        self._error = None
        self._head = None
        self._raw_headers = []
        self._framed = False
        self._sink = None
        self._pending = []
        self._complete = False
        self._received = 0
        self._deadline = deadline
        self._read_timeout = read_timeout
        self._last_read = self._loop.time()
        if read_timer:
            self._arm_timer()

    def end_request(self) -> None:
        """The whole request is written: a response from now on is not an early answer."""
        self._sending = False

    def start_read_timer(self) -> None:
        """Start the read timeout now (after a streamed upload)."""
        self._last_read = self._loop.time()
        self._arm_timer()

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or self._lost or transport.is_closing():
            if self._error is not None:
                raise self._error
            raise UpstreamError(f"{self.target.url} closed the connection while the request was sent")
        transport.write(data)

    async def drain(self) -> None:
        if self._write_paused and not self._lost:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter

    @property
    def head(self) -> ResponseHead | None:
        return self._head

    @property
    def complete(self) -> bool:
        return self._complete

    def detach(self) -> None:
        """Leave callback mode: from now on the exchange is followed with futures."""
        self.listener = None
        self._notify = 0

    async def response_head(self) -> ResponseHead:
        if self._head is not None:
            return self._head
        if self._error is not None:
            raise self._error
        if self._head_fut is None:
            self._head_fut = self._loop.create_future()
        return await self._head_fut

    def take_complete_body(self) -> bytes | None:
        """The whole body, if the response already arrived in full; else ``None``.

        Small responses usually arrive with their head: sending them on in one write
        (instead of head, then body) saves a system call per request.
        """
        if not self._complete or self._sink is not None:
            return None
        pending, self._pending = self._pending, []
        return b"".join(pending) if len(pending) != 1 else pending[0]

    def set_sink(self, sink: BodySink | None) -> None:
        """Send body chunks to ``sink`` from now on (``None``: keep buffering)."""
        self._sink = sink
        if sink is not None and self._pending:
            pending, self._pending = self._pending, []
            for chunk in pending:
                sink(chunk)

    async def wait_done(self) -> None:
        """Wait until the response body has been read in full."""
        if self._complete:
            return
        if self._error is not None:
            raise self._error
        if self._done_fut is None:
            self._done_fut = self._loop.create_future()
        await self._done_fut

    async def read_body_into(self, limit: int | None) -> bytes:
        """Buffer the whole body (up to ``limit`` bytes) and return it."""
        chunks: list[bytes] = []
        size = 0

        def sink(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            if limit is not None and size > limit:
                self._fail(UpstreamProtocolError("upstream response body exceeds the buffering limit"))
                self.close()
                return
            chunks.append(chunk)

        self.set_sink(sink)
        await self.wait_done()
        return b"".join(chunks)

    async def read_body_upto(self, limit: int) -> bytes | None:
        """The whole body, if it is at most ``limit`` bytes; else ``None`` as soon as it is
        larger, with what was read put back in order (the next sink gets it first), so the
        caller can still refuse the response or stream it on -- never a failed connection."""
        chunks: list[bytes] = []
        size = 0
        over = False

        def sink(chunk: bytes) -> None:
            nonlocal size, over
            if over:  # the rest of a flush (set_sink) in progress when the limit was crossed
                self._pending.append(chunk)
                return
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                over = True
                self._sink = None
                self._pending = chunks + self._pending
                done = self._done_fut
                if done is not None and not done.done():
                    done.set_result(None)  # wake the reader below; the body is not done

        self.set_sink(sink)
        if not over:
            await self.wait_done()
        if over:
            self._done_fut = None  # a later wait_done waits for the real end
            return None
        return b"".join(chunks)

    def pause_reading(self) -> None:
        if self.transport is not None and not self._lost:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self._lost:
            # The upstream was silent because we stopped reading, not on its own account:
            # its read timeout starts again from now.
            self._read_paused = False
            self._last_read = self._loop.time()
            self.transport.resume_reading()

    def close(self) -> None:
        self._kill_timer()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._kill_timer()
        if self.transport is not None:
            self.transport.abort()

    # -- internals ---------------------------------------------------------------------
    def _finish(self) -> None:
        self._complete = True
        self._cancel_timer()
        if self._done_fut is not None and not self._done_fut.done():
            self._done_fut.set_result(None)
        elif self.listener is not None and self._notify == 0 and self._head is not None:
            if self._lost:
                # Not inside feed_data (the end of a close-delimited body): tell now.
                self.listener.upstream_done(self)
            else:
                self._notify = 2

    def _fail(self, exc: UpstreamError) -> None:
        self._cancel_timer()
        self._error = exc
        listener = self.listener
        if listener is not None:
            self.listener = None
            self._notify = 0
            listener.upstream_failed(self, exc)
            return
        if self._head_fut is not None and not self._head_fut.done():
            self._head_fut.set_exception(exc)
        if self._done_fut is not None and not self._done_fut.done():
            self._done_fut.set_exception(exc)

    def _due(self) -> float:
        """When the exchange times out (loop time): read silence or total deadline."""
        now = self._loop.time()
        until_deadline = self._deadline - time.monotonic()
        if self._read_paused:
            return now + until_deadline  # a slow client pauses us: only the total deadline runs
        return min(self._last_read + self._read_timeout, now + until_deadline)

    def _arm_timer(self) -> None:
        # One timer per connection, kept across exchanges. Reads only record their time;
        # when the timer fires it re-arms itself if the exchange is not yet due (cheaper
        # than re-arming on every read or creating a timer per exchange).
        self._timing = True
        due = self._due()
        if self._timer is not None:
            if self._timer_at <= due:
                return
            self._timer.cancel()
        self._timer_at = due
        self._timer = self._loop.call_at(due, self._timed_out)

    def _cancel_timer(self) -> None:
        self._timing = False

    def _kill_timer(self) -> None:
        self._timing = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if not self._timing or self._complete:
            return
        due = self._due()
        if self._loop.time() < due:
            self._timer_at = due
            self._timer = self._loop.call_at(due, self._timed_out)
            return
        self._fail(UpstreamTimeout(f"{self.target.url} did not answer in time"))
        self.abort()
