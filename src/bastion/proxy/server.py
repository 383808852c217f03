"""The client side of the data plane: the listener and its connections, on uvloop.

A connection moves bytes and runs timers. What it reads goes to its request reader (the
HTTP/1.1 rules, ``http1.py``), which queues the requests; they are answered strictly in
order (so pipelined requests are answered in order), each by a :class:`Flight` running the
exchange's steps (``exchange.py``), which calls back here to read bodies and write
answers (a response body streaming from the upstream goes through ``stream.py``). Request
and response bodies stream through with back-pressure in both directions unless a stage
asked for the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, cast

from bastion.errors import problem_response
from bastion.proxy.exchange import BodyError, Flight
from bastion.proxy.http import status_line
from bastion.proxy.http1 import (
    BODY_BUFFER_HIGH,
    DATA,
    DISCARD_LIMIT,
    FAILED,
    HEAD,
    MAX_QUEUED,
    PAUSE,
    STARTED,
    Incoming,
    RequestReader,
    body_discardable,
    whole_framing,
)
from bastion.proxy.limits import BODY_TIMEOUT, BODY_TOO_LARGE, BODY_TOTAL_TIMEOUT, HEADER_TIMEOUT
from bastion.proxy.metrics import METRICS
from bastion.proxy.prelude import next_request_id
from bastion.proxy.record import RecordDraft, RecordSinks, finish_record, new_record
from bastion.proxy.runtime import Runtime
from bastion.proxy.tls import client_certificate
from bastion.proxy.upstream_connection import ResponseHead, UpstreamConnection
from bastion.types import ClientCertificate, Response, header_get

log = logging.getLogger("bastion.proxy")

#: How long a refused client may go on sending before its connection is closed anyway.
LINGER_SECONDS = 2.0
#: Shutdown: how long an idle keep-alive connection stays open once draining began. A
#: request the client sent at that moment is still answered (with ``Connection: close``)
#: instead of meeting a closed socket.
DRAIN_IDLE_SECONDS = 1.0
#: Shutdown: how long the last answers (503s) may take to flush before connections are cut.
SHUTDOWN_FLUSH_SECONDS = 1.0
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ClientGone(Exception):
    """The client closed the connection."""


class GatewayServer:
    """The listener of one worker: its connections, current runtime and record sinks."""

    def __init__(self, runtime: Runtime, sinks: RecordSinks) -> None:
        self.runtime = runtime
        #: Where each exchange's record goes once complete (metrics, the access log).
        self.sinks = sinks
        self.connections: set[ClientConnection] = set()
        self.draining = False
        self.all_closed = asyncio.Event()
        self._server: asyncio.base_events.Server | None = None

    async def start(self, sock: Any, ssl_context: Any = None, *, handshake_timeout: float = 10.0) -> None:
        """Serve connections accepted on ``sock``; with ``ssl_context``, over TLS whose
        handshake must end within ``handshake_timeout`` s (the header timeout only starts
        once the handshake is done, and the event loop's own default is 60 s)."""
        loop = asyncio.get_running_loop()
        if ssl_context is None:
            self._server = await loop.create_server(lambda: ClientConnection(self), sock=sock, backlog=1024)
            return
        self._server = await loop.create_server(
            lambda: ClientConnection(self),
            sock=sock,
            ssl=ssl_context,
            ssl_handshake_timeout=handshake_timeout,
            backlog=1024,
        )

    def swap_runtime(self, runtime: Runtime) -> Runtime:
        """Serve new requests from ``runtime``; return the old one (to close after a grace)."""
        old, self.runtime = self.runtime, runtime
        return old

    async def drain(self, grace: float) -> None:
        """Graceful shutdown: stop accepting connections; for up to ``grace`` s keep
        answering what arrives on open ones (with ``Connection: close``, then closing),
        closing idle ones between requests. Then requests still running get a 503 (or, when
        their response is already streaming, are cut); each is logged as what happened."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.start_draining()
        await self._wait_closed(grace)
        tasks = [conn.task for conn in self.connections if conn.task is not None]
        for conn in list(self.connections):
            conn.shut_down()
        await self._wait_closed(SHUTDOWN_FLUSH_SECONDS)
        for conn in list(self.connections):
            conn.abort()
        # The access records of cut requests are written as their connections and tasks
        # finish; the worker closes the access log right after this returns.
        await self._wait_closed(SHUTDOWN_FLUSH_SECONDS)
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_FLUSH_SECONDS)

    async def _wait_closed(self, seconds: float) -> None:
        if self.connections:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self.all_closed.wait()

    def forget(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        if self.draining and not self.connections:
            self.all_closed.set()


class ClientConnection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        #: The HTTP/1.1 rules (no I/O); this class moves the bytes and runs the timers.
        self.reader = RequestReader(server.runtime.limits)
        #: The requests parsed and not answered yet (the reader's queue).
        self.queue = self.reader.queue
        self.task: asyncio.Task[None] | None = None
        #: The exchange being answered (the request at the head of the queue).
        self.flight: Flight | None = None
        self.closed = False
        #: The connection is closing (after an answer that ended it): answer nothing more.
        self.ending = False
        self.lingering = False
        #: A response said ``Connection: close``: the connection ends after it.
        self.close_sent = False
        #: The access record of the request being answered (``None`` between requests).
        self.record: RecordDraft | None = None
        self.eof = False
        self.busy = False
        self.read_paused = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.paused_upstream: UpstreamConnection | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_kind = ""
        self.timer_at = 0.0
        self.deadline = 0.0
        self.peer_ip = ""
        self.scheme = "http"
        #: The client's TLS certificate (mTLS), read once at the handshake.
        self.client_cert: ClientCertificate | None = None
        #: The TLS version of the connection (``"TLSv1.3"``), for the exchange records.
        self.tls_version: str | None = None

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if isinstance(peer, tuple) else "unix"
        if transport.get_extra_info("sslcontext") is not None:
            self.scheme = "https"
            ssl_object = transport.get_extra_info("ssl_object")
            self.client_cert = client_certificate(ssl_object)
            self.tls_version = ssl_object.version() if ssl_object is not None else None
        self.server.connections.add(self)
        METRICS.gauge_add("bastion_client_connections", 1)
        self._arm(self.server.runtime.timeouts.idle, "idle")
        if self.server.draining:
            self.start_draining()  # accepted just before the listener closed (or mid-handshake)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.server.forget(self)
        METRICS.gauge_add("bastion_client_connections", -1)
        flight = self.flight
        if flight is not None:
            flight.abandon()  # if parked on its upstream; a task is cancelled below
        for req in (self.reader.current, *self.queue):
            if req is not None and req.waiter is not None and not req.waiter.done():
                req.waiter.set_result(None)
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_exception(ClientGone())
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        limits = self.server.runtime.limits
        if reader.limits is not limits:  # a reload changed them
            reader.use_limits(limits)
        self._react(reader.feed(data))
        # After the parser returned (never inside its callbacks): small requests are complete
        # by now, and answering them cannot re-enter the parser.
        if not self.busy and self.queue:
            self._pump()

    def eof_received(self) -> bool | None:
        self.eof = True
        if self.lingering:
            return None  # the client is done too: close now
        # Half-close: the client sent everything. Answer what is queued, then close.
        self._react(self.reader.end_of_input())
        if not self.busy and not self.queue:
            return None  # nothing in flight: let the transport close
        if not self.busy:
            self._pump()
        return True  # keep the write side open until the answers are sent

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.paused_upstream is not None:
            self.paused_upstream.resume_reading()
            self.paused_upstream = None
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    # -- what the reader reports ------------------------------------------------------------
    def _react(self, events: int) -> None:
        """Act on the events of one call of the reader (see ``http1``)."""
        if not events:
            return
        if events & PAUSE:
            self._pause_reading()
        if events & STARTED and not self.busy:
            # The header timeout runs from a head's first byte, unless a request is being
            # answered (then it starts when that answer is done).
            if self.reader.receiving:
                self._arm(self.server.runtime.timeouts.header, "header")
            else:
                self._cancel_timer()  # the head began and ended within this read
        elif events & HEAD and self.timer_kind == "header":
            self._cancel_timer()
        if events & DATA and self.queue:
            self._wake(self.queue[0])  # only the request being answered reads its body
        if events & FAILED and not self.busy:
            self.loop.call_soon(self._pump)

    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.read_paused and not self.reader.dead and self.transport is not None and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    @staticmethod
    def _wake(req: Incoming) -> None:
        if req.waiter is not None and not req.waiter.done():
            req.waiter.set_result(None)

    # -- timers -------------------------------------------------------------------------
    # One timer per connection, re-used: arming only moves a deadline, and the timer is
    # re-created only when the new deadline is earlier than the scheduled one. Creating
    # and cancelling a timer handle per request is measurable at tens of thousands/s.

    def _arm(self, seconds: float, kind: str) -> None:
        deadline = self.loop.time() + seconds
        self.timer_kind = kind
        self.deadline = deadline
        if self.timer is not None and self.timer_at <= deadline:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = deadline
        self.timer = self.loop.call_at(deadline, self._timed_out)

    def _cancel_timer(self) -> None:
        self.timer_kind = ""

    def _timed_out(self) -> None:
        self.timer = None
        if self.closed or not self.timer_kind:
            return
        if self.loop.time() < self.deadline:
            self.timer_at = self.deadline
            self.timer = self.loop.call_at(self.deadline, self._timed_out)
            return
        kind, self.timer_kind = self.timer_kind, ""
        if kind == "idle":
            self._close()
        elif kind == "header" and not self.busy:
            self._react(self.reader.fail(408, "The request head was not received in time.", HEADER_TIMEOUT))
        elif kind == "body" or kind == "body_total":
            req = self.queue[0] if self.queue else None
            if req is not None:
                req.error = (408, "The request body was not received in time.")
                req.reason = BODY_TIMEOUT if kind == "body" else BODY_TOTAL_TIMEOUT
                self._wake(req)

    # -- connection lifecycle ---------------------------------------------------------------
    def start_draining(self) -> None:
        """Shutdown began. A connection answering a request closes after that answer (which
        says ``Connection: close``); one receiving a request head is not idle and answers it
        likewise; an idle one gets ``DRAIN_IDLE_SECONDS`` for a request already on its way."""
        if not self.busy and not self.queue and not self.reader.receiving:
            self._arm(DRAIN_IDLE_SECONDS, "idle")

    def shut_down(self) -> None:
        """The drain period is over. A request whose response head is not sent yet gets a
        503 (``Connection: close``) and is logged as such; a response already streaming is
        cut and logged as cut by the shutdown (not as a client that left)."""
        if self.closed or self.transport is None:
            return
        if not self.busy:
            self.abort()  # idle, or a request head still arriving: nothing to answer yet
            return
        record = self.record
        if record is not None and record.status:
            # The answer's head is out (a refusal's own reason, if any, stays in the record).
            if record.reason is None:
                record.reason = "shutdown.response_cut"
            self.abort()  # connection_lost abandons the exchange and logs its record
            return
        if not self.queue:
            self.abort()
            return
        req = self.queue[0]
        started = record is not None
        if record is None:
            record = new_record(req, next_request_id(), self.peer_ip)  # not begun (never expected)
            self.record = record
        record.reason = "shutdown.drain_timeout"
        request_id = record.request_id
        resp = problem_response(503, "The gateway is shutting down; retry the request.", request_id)
        # Sent first (which sets the record's status), then the exchange is stopped: nothing
        # else writes a response, and what logs the record now logs a 503, not a 499.
        self._send_whole(resp, req, record, False, request_id)
        flight = self.flight
        if flight is not None and flight.parked:
            flight.abandon()  # drops the upstream connection and logs the record
        elif self.task is not None:
            self.task.cancel()  # the flight's task logs the record as it stops
        if not started:
            finish_record(self.server.sinks, None, record, req)

    def _close(self) -> None:
        self.ending = True
        transport = self.transport
        if transport is None or self.closed or self.lingering:
            return
        current = self.reader.current
        unread = current is not None and not current.complete and not self.eof
        if unread and transport.can_write_eof():
            # Lingering close: the client may still be sending a body we refused. Closing
            # with unread input makes the kernel send a reset, which can destroy the answer
            # before the client reads it; so end our side, drop what still comes, then close.
            self.lingering = True
            self.reader.dead = True
            transport.write_eof()
            if self.read_paused:
                self.read_paused = False
                transport.resume_reading()
            self.loop.call_later(LINGER_SECONDS, self.abort)
            return
        transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    # -- the request queue ---------------------------------------------------------------
    # Requests are answered strictly in order, each by a Flight: with plain calls as far as
    # its steps allow, then in a task or on its upstream connection's callbacks.
    def _pump(self) -> None:
        while not self.busy and self.queue and not self.ending and not self.closed:
            self.busy = True
            flight = Flight(self, self.queue[0])
            self.flight = flight
            try:
                keep = flight.start()
            except Exception:  # a bug in the proxy: never take the worker down with it
                log.exception("request handler failed")
                self.abort()
                return
            if keep is None:
                return  # in flight: its task or its upstream's callbacks call _complete
            if not self._after(keep):
                return
        if not self.busy and not self.queue and self.reader.dead:
            self._close()  # the client half-closed and everything is answered

    def _complete(self, keep: bool) -> None:
        """The request at the head of the queue has been answered (asynchronously)."""
        if self._after(keep):
            self._pump()

    def _after(self, keep: bool) -> bool:
        """Bookkeeping after an answer; tell whether to go on with the next request."""
        self.busy = False
        self.task = None
        self.flight = None
        self.record = None
        if self.queue:
            self.queue.popleft()
        if not keep or self.close_sent or self.closed:
            self._close()
            return False
        if not self.queue:
            if self.reader.receiving:
                self._arm(self.server.runtime.timeouts.header, "header")
            elif self.server.draining:
                # The answer went out before the drain began and promised keep-alive: the
                # client may be sending its next request right now.
                self._arm(DRAIN_IDLE_SECONDS, "idle")
            else:
                self._arm(self.server.runtime.timeouts.idle, "idle")
        if len(self.queue) <= MAX_QUEUED // 2:
            self._resume_reading()
        return True

    # -- reading bodies, writing answers (for the Flight) ------------------------------------
    async def _discard_body(self, req: Incoming) -> bool:
        """Read and drop an unwanted body, if small; tell whether the connection is reusable."""
        if req.complete and req.error is None:
            return True
        if not body_discardable(req):
            return False
        try:
            while (await self._next_chunk(req)) is not None:
                if req.consumed > DISCARD_LIMIT:
                    return False
        except BodyError:
            return False
        return True

    async def _read_body(self, req: Incoming, limit: int) -> bytes:
        parts: list[bytes] = []
        while True:
            chunk = await self._next_chunk(req)
            if chunk is None:
                return b"".join(parts)
            parts.append(chunk)
            if req.consumed > limit:
                raise BodyError(413, "The request body is too large for this route.", BODY_TOO_LARGE)

    async def _next_chunk(self, req: Incoming) -> bytes | None:
        """The next piece of the request body; ``None`` at its end."""
        if req.expect_continue and not req.continue_sent:
            req.continue_sent = True
            if not req.complete and self.transport is not None:
                self.transport.write(_CONTINUE)
        while True:
            if req.error is not None:
                raise BodyError(req.error[0], req.error[1], req.reason)
            chunk = req.pop_chunk()
            if chunk is not None:
                if self.read_paused and req.buffered < BODY_BUFFER_HIGH // 2 and len(self.queue) <= MAX_QUEUED:
                    self._resume_reading()
                return chunk
            if req.complete:
                return None
            if self.closed:
                raise ClientGone()
            req.waiter = self.loop.create_future()
            self._arm_body(req)
            try:
                await req.waiter
            finally:
                req.waiter = None
                if self.timer_kind == "body" or self.timer_kind == "body_total":
                    self._cancel_timer()

    def _arm_body(self, req: Incoming) -> None:
        """Wait for the next piece of a body at most ``timeouts.body``, and never past
        ``timeouts.body_total`` from the end of its head: a body trickled just fast enough
        to beat the first is cut by the second (slowloris)."""
        timeouts = self.server.runtime.timeouts
        left = timeouts.body_total - (time.perf_counter() - req.started)
        if left < timeouts.body:
            self._arm(max(left, 0.0), "body_total")
        else:
            self._arm(timeouts.body, "body")

    def _send_whole(self, resp: Response, req: Incoming, record: RecordDraft, keep: bool, request_id: str) -> None:
        """Write a response whose body is known in full, head and body in one write."""
        # One join over the pieces: a formatted string per header cost ~500 instructions.
        parts: list[str] = []
        for k, v in resp.headers:
            if k != "content-length" and k != "transfer-encoding":
                parts.append(k)
                parts.append(": ")
                parts.append(v)
                parts.append("\r\n")
        block = "".join(parts).encode("latin-1")
        length = header_get(resp.headers, "content-length")
        self._write_whole(resp.status, block, length, resp.body or b"", req, record, keep, request_id)

    def _send_upstream(
        self,
        head: ResponseHead,
        body: bytes,
        req: Incoming,
        record: RecordDraft,
        keep: bool,
        request_id: str,
        fields: bytes = b"",
    ) -> None:
        """Like ``_send_whole`` for an upstream response no stage looked at: its headers go
        out as the bytes they came in (names lower-cased), never decoded, then ``fields``
        (header lines a stage adds: ``Chain.fields``)."""
        length: str | None = None
        parts = []
        for k, v in head.raw:
            if k == b"content-length":
                length = v.decode("latin-1")
                continue
            parts.append(b"%b: %b\r\n" % (k, v))
        parts.append(fields)
        self._write_whole(head.status, b"".join(parts), length, body, req, record, keep, request_id)

    def _write_whole(
        self,
        status: int,
        block: bytes,
        declared_length: str | None,
        body: bytes,
        req: Incoming,
        record: RecordDraft,
        keep: bool,
        request_id: str,
    ) -> None:
        tail, body = whole_framing(status, req.method, declared_length, body)
        tail += f"x-request-id: {request_id}\r\n"
        if self.scheme == "https" and self.server.runtime.hsts is not None:
            tail += f"strict-transport-security: {self.server.runtime.hsts}\r\n"
        if self.server.draining:
            keep = False  # shutting down: every answer ends its connection, and says so
        if not keep:
            tail += "connection: close\r\n"
            self.close_sent = True
        record.status = status
        record.bytes_out = len(body)
        if self.transport is not None and not self.closed:
            self.transport.write(status_line(status) + block + tail.encode("latin-1") + b"\r\n" + body)
        if not keep:
            self._close()


__all__ = ["ClientConnection", "GatewayServer"]
