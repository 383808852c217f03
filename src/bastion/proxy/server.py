"""The client side of the data plane: an HTTP/1.1 server on uvloop + llhttp (httptools).

Each connection parses requests as bytes arrive and queues their heads; one task per
connection answers them strictly in order (so pipelined requests are answered in order),
running the route's chain and forwarding to the upstream pool. Request and response bodies
stream through with back-pressure in both directions unless a stage asked for the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple, cast

from bastion.errors import problem_response
from bastion.pipeline.chain import Chain, Pending
from bastion.proxy.accesslog import AccessLog
from bastion.proxy.http import (
    HOP_BY_HOP,
    IDEMPOTENT_METHODS,
    body_forbidden,
    serialize_headers,
    status_line,
    strip_hop_by_hop,
)
from bastion.proxy.http1 import (
    BODY_BUFFER_HIGH,
    DATA,
    FAILED,
    HEAD,
    HOST_CHARS,
    MAX_QUEUED,
    PAUSE,
    STARTED,
    Incoming,
    RequestReader,
    body_discardable,
    keeps_alive_after_refusal,
    streamed_framing,
)
from bastion.proxy.metrics import METRICS
from bastion.proxy.runtime import RouteRuntime, Runtime
from bastion.proxy.upstream import (
    ResponseHead,
    TargetState,
    UpstreamConnection,
    UpstreamError,
    UpstreamListener,
    UpstreamPool,
)
from bastion.routing import BadTarget, Match, split_absolute, split_target
from bastion.types import Exchange, HeaderList, Request, Response, header_get

log = logging.getLogger("bastion.proxy")

#: How long a refused client may go on sending before its connection is closed anyway.
LINGER_SECONDS = 2.0
#: Shutdown: how long an idle keep-alive connection stays open once draining began. A
#: request the client sent at that moment is still answered (with ``Connection: close``)
#: instead of meeting a closed socket.
DRAIN_IDLE_SECONDS = 1.0
#: Shutdown: how long the last answers (503s) may take to flush before connections are cut.
SHUTDOWN_FLUSH_SECONDS = 1.0
#: Incoming headers a gateway owns: dropped from clients, rewritten for the upstream.
FORWARDING_HEADERS = frozenset(
    {
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-real-ip",
        "x-request-id",
        "expect",
    }
)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: Facts stages leave in ``exchange.context`` that belong in the access log.
_LOGGED_CONTEXT = ("validation", "detection")
_REQUEST_ID_CHARS = HOST_CHARS.replace("[]", "")


class ClientGone(Exception):
    """The client closed the connection."""


class GatewayServer:
    """The listener of one worker: its connections, current runtime and access log."""

    def __init__(self, runtime: Runtime, access_log: AccessLog) -> None:
        self.runtime = runtime
        self.access_log = access_log
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
        self.flight: _Flight | None = None
        self.closed = False
        self.lingering = False
        #: A response said ``Connection: close``: the connection ends after it.
        self.close_sent = False
        #: The access record of the request being answered (``None`` between requests).
        self.record: dict[str, Any] | None = None
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

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if isinstance(peer, tuple) else "unix"
        if transport.get_extra_info("sslcontext") is not None:
            self.scheme = "https"
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
            self.flight = None
            flight.abandon()
        for req in (self.reader.current, *self.queue):
            if req is not None and req.waiter is not None and not req.waiter.done():
                req.waiter.set_result(None)
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_exception(ClientGone())
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.limits = self.server.runtime.limits
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
            self._react(self.reader.fail(408, "The request head was not received in time."))
        elif kind == "body":
            req = self.queue[0] if self.queue else None
            if req is not None:
                req.error = (408, "The request body was not received in time.")
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
        if record is not None and record["status"]:
            # The answer's head is out (a refusal's own reason, if any, stays in the record).
            record.setdefault("reason", "shutdown.response_cut")
            self.abort()  # connection_lost abandons the exchange and logs its record
            return
        if not self.queue:
            self.abort()
            return
        req = self.queue[0]
        task_started = record is not None
        if record is None:
            record = self._new_record(req, _ids.next())  # its task has not run yet
        record["reason"] = "shutdown.drain_timeout"
        request_id = str(record["request_id"])
        resp = problem_response(503, "The gateway is shutting down; retry the request.", request_id)
        # Sent first (which sets the record's status), then the exchange is stopped: nothing
        # else writes a response, and what logs the record now logs a 503, not a 499.
        self._send_whole(resp, req, record, False, request_id)
        flight = self.flight
        if flight is not None:
            self.flight = None
            flight.abandon()  # drops the upstream connection and logs the record
        elif self.task is not None:
            self.task.cancel()  # the handler's ``finally`` logs the record
        if not task_started:
            self._finish_record(None, record, req)

    def _close(self) -> None:
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
    # Requests are answered strictly in order. The one at the head of the queue is handled
    # by the fast path (plain callbacks, see ``_start``) when it is complete and needs no
    # waiting, and otherwise by a task running ``_handle`` (streamed bodies, awaiting
    # stages, new upstream connections, retries).
    def _pump(self) -> None:
        while not self.busy and self.queue and not self.closed:
            req = self.queue[0]
            self.busy = True
            if not req.complete and req.error is None and not req.upgrade:
                self._spawn(self._handle(req))
                return
            try:
                keep = self._start(req)
            except Exception:  # a bug in the proxy: never take the worker down with it
                log.exception("request handler failed")
                self.abort()
                return
            if keep is None:
                return  # in flight: a callback or a task calls _complete
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

    def _spawn(self, handler: Coroutine[Any, Any, bool]) -> None:
        self.task = self.loop.create_task(self._run(handler))

    async def _run(self, handler: Coroutine[Any, Any, bool]) -> None:
        try:
            keep = await handler
        except asyncio.CancelledError:
            return  # the client went away; connection_lost cleaned up
        except Exception:  # a bug in the proxy: never take the worker down with it
            log.exception("request handler failed")
            self.abort()
            return
        self._complete(keep)

    # -- the fast path ---------------------------------------------------------------------
    def _new_record(self, req: Incoming, request_id: str) -> dict[str, Any]:
        record: dict[str, Any] = {
            "ts": time.time(),
            "request_id": request_id,
            "client": self.peer_ip,
            "method": req.method,
            "path": None,
            "route": None,
            "service": None,
            "status": 0,
            "bytes_in": 0,
            "bytes_out": 0,
        }
        self.record = record  # the request being answered (a drain timeout must know it)
        return record

    def _start(self, req: Incoming) -> bool | None:
        """Handle a complete request with plain calls as far as possible.

        Returns whether the connection stays open when the request was answered here, or
        ``None`` when the answer comes later (from the upstream's callbacks, or a task).
        """
        if req.error is not None or req.upgrade or req.expect_continue:
            self._spawn(self._handle(req))  # rare cases: the general path knows them all
            return None
        record, outcome = self._prelude(req)
        if isinstance(outcome, _Refusal):
            keep = self._refuse(req, record, outcome)
            self._finish_record(None, record, req)
            return keep
        route, ex = outcome
        body = req.take_buffered()
        record["bytes_in"] = req.consumed
        chain = route.chain
        if chain.needs_request_body:
            ex.request.body = body
        if chain.request_stages:
            answer = chain.request(ex)
            if isinstance(answer, Pending):
                self._spawn(self._finish_stages(req, route, ex, record, body, answer))
                return None
            if answer is not None:
                return self._answer_now(req, route, ex, record, answer)
        # Forward, on a kept-alive connection if one is idle (else the task opens one).
        pool = route.pool
        try:
            target = pool.choose()
        except UpstreamError as exc:
            keep = self._upstream_failed(req, route, ex, record, exc)
            self._finish_record(ex, record, req)
            return keep
        conn = pool.pooled(target)
        if conn is None:
            forward = self._forward(req, route, ex, record, body, first=target)
            self._spawn(self._accounted(req, ex, record, forward))
            return None
        flight = _Flight(self, req, route, ex, record, body, target, conn)
        target.active += 1
        cfg = pool.config
        flight.deadline = time.monotonic() + cfg.timeouts.total
        conn.begin(ex.request.method, flight.deadline, cfg.timeouts.read, flight)
        self.flight = flight
        conn.write(self._upstream_head(ex, target, len(body)) + body)
        conn.end_request()
        return None

    def _refuse(self, req: Incoming, record: dict[str, Any], refusal: _Refusal) -> bool:
        """Answer with a core problem document at once; tell whether the connection stays.

        It stays only for a well-formed request whose (small) remaining body can be read
        and dropped after the answer (``_reject`` does that)."""
        record["blocked_by"] = refusal.stage
        record["reason"] = refusal.reason
        if refusal.stage != "core":  # a stage's decision, recorded as the chain records them
            record["decisions"] = [{"stage": refusal.stage, "action": "block", "reason": refusal.reason}]
        METRICS.inc("bastion_blocked", (refusal.stage, refusal.reason, "block"))
        resp = problem_response(
            refusal.status, refusal.detail, refusal.request_id, title=refusal.title, headers=refusal.extra
        )
        keep = keeps_alive_after_refusal(req, self.server.draining)
        self._send_whole(resp, req, record, keep, refusal.request_id)
        return keep

    def _answer_now(
        self, req: Incoming, route: RouteRuntime, ex: Exchange, record: dict[str, Any], answer: Response
    ) -> bool | None:
        """A stage answered (or refused) the request: run the response hooks and send."""
        ex.response = answer
        pending = route.chain.response(ex) if route.chain.response_stages else None
        if pending is not None:
            self._spawn(self._send_after_stages(req, route, ex, record, pending))
            return None
        keep = req.keep_alive
        self._send_whole(ex.response, req, record, keep, ex.request_id)
        self._finish_record(ex, record, req)
        return keep

    async def _finish_stages(
        self, req: Incoming, route: RouteRuntime, ex: Exchange, record: dict[str, Any], body: bytes, pending: Pending
    ) -> bool:
        """The request chain is waiting on a stage: finish it, then answer or forward."""
        try:
            answer = await route.chain.finish_request(ex, pending)
            if answer is not None:
                ex.response = answer
                await route.chain.run_response(ex)
                keep = req.keep_alive
                self._send_whole(ex.response, req, record, keep, ex.request_id)
                return keep
            return await self._forward(req, route, ex, record, body)
        except asyncio.CancelledError:
            record["status"] = record["status"] or 499
            raise
        finally:
            self._finish_record(ex, record, req)

    async def _send_after_stages(
        self, req: Incoming, route: RouteRuntime, ex: Exchange, record: dict[str, Any], pending: Pending
    ) -> bool:
        try:
            await route.chain.finish_response(ex, pending)
            assert ex.response is not None
            keep = req.keep_alive
            self._send_whole(ex.response, req, record, keep, ex.request_id)
            return keep
        finally:
            self._finish_record(ex, record, req)

    async def _accounted(
        self, req: Incoming, ex: Exchange, record: dict[str, Any], handler: Coroutine[Any, Any, bool]
    ) -> bool:
        """Run ``handler`` and write the exchange's access record whatever happens."""
        try:
            return await handler
        except asyncio.CancelledError:
            record["status"] = record["status"] or 499
            raise
        finally:
            self._finish_record(ex, record, req)

    def _finish_record(self, ex: Exchange | None, record: dict[str, Any], req: Incoming) -> None:
        """Complete the access record with what the stages decided, then count and log it."""
        seconds = time.perf_counter() - req.started
        record["latency_ms"] = round(seconds * 1000, 3)
        service = record["service"] or "-"
        METRICS.count_request(service, record["route"] or "-", record["status"], seconds)
        self.server.access_log.write(record)
        if ex is not None:
            if ex.blocked_by:
                record["blocked_by"] = ex.blocked_by
            if ex.decisions:
                record["decisions"] = [{"stage": d.stage, "action": d.action, "reason": d.reason} for d in ex.decisions]
                for d in ex.decisions:
                    if d.action in ("block", "monitor"):
                        METRICS.inc("bastion_blocked", (d.stage, d.reason, d.action))
            context = ex.context
            for key in _LOGGED_CONTEXT:
                if key in context:
                    record[key] = context[key]

    # Called by _Flight, from the upstream connection's callbacks.
    def _flight_response(self, flight: _Flight) -> None:
        conn, route, ex, req, record = flight.conn, flight.route, flight.ex, flight.req, flight.record
        head = conn.head
        assert head is not None
        target = flight.target
        record["upstream"] = target.url
        if head.status in (502, 503, 504):
            target.record_failure(time.monotonic())
        else:
            target.record_success()
        chain = route.chain
        body = conn.take_complete_body()
        if body is None and (chain.needs_response_body or chain.response_stages):
            # A body still arriving, with stages to run: the general path takes over.
            self._hand_over(conn, self._respond_and_release(req, route, ex, record, conn, head), req, ex, record)
            return
        if body is not None and not chain.response_stages:
            # Nothing to run on the response: pass it through as bytes.
            target.active -= 1
            route.pool.release(conn)
            keep = req.keep_alive and not self.server.draining
            self._send_upstream(head, body, req, record, keep, ex.request_id)
            self._finish_record(ex, record, req)
            self._complete(keep)
            return
        resp = Response(head.status, head.headers, body)
        ex.response = resp
        if chain.response_stages:
            pending = chain.response(ex)
            if pending is not None:
                self._hand_over(
                    conn, self._finish_response_stages(req, route, ex, record, conn, pending), req, ex, record
                )
                return
        keep = req.keep_alive and not self.server.draining
        final = ex.response
        if body is not None:
            target.active -= 1
            if final is resp or conn.reusable():
                route.pool.release(conn)
            else:
                conn.abort()
            self._send_whole(final, req, record, keep, ex.request_id)
            self._finish_record(ex, record, req)
            self._complete(keep)
            return
        # Stream the body through as it arrives.
        flight.keep, flight.stream = self._stream_head(req, resp, record, ex.request_id, keep, conn)
        if flight.stream is not None and conn.complete:
            self._flight_done(flight)

    def _hand_over(
        self,
        conn: UpstreamConnection,
        handler: Coroutine[Any, Any, bool],
        req: Incoming,
        ex: Exchange,
        record: dict[str, Any],
    ) -> None:
        """Continue a fast-path exchange in a task (the task now owns the connection)."""
        conn.detach()
        self.flight = None
        self._spawn(self._accounted(req, ex, record, handler))

    def _flight_done(self, flight: _Flight) -> None:
        stream = flight.stream
        assert stream is not None
        flight.target.active -= 1
        self._end_stream(stream, flight.conn, flight.route.pool, flight.record)
        self._finish_record(flight.ex, flight.record, flight.req)
        self._complete(flight.keep)

    def _flight_failed(self, flight: _Flight, exc: UpstreamError) -> None:
        route, ex, req, record, target = flight.route, flight.ex, flight.req, flight.record, flight.target
        target.active -= 1
        target.record_failure(time.monotonic())
        flight.conn.abort()
        METRICS.inc("bastion_upstream_errors", (route.service, exc.kind))
        if flight.stream is not None:
            # The head is out: the only honest signal left is to cut the connection.
            log.warning("upstream body failed for %s (request %s): %s", route.service, ex.request_id, exc)
            record["upstream_error"] = exc.kind
            record["bytes_out"] = flight.stream.sent
            self._finish_record(ex, record, req)
            self.flight = None
            self.abort()
            return
        cfg = route.pool.config
        if (
            exc.retryable
            and cfg.retries
            and ex.request.method in IDEMPOTENT_METHODS
            and time.monotonic() < flight.deadline
        ):
            # Try again (another target if there is one) on the general path.
            self.flight = None
            retry = self._forward(req, route, ex, record, flight.body, exclude=target, attempts_used=1)
            self._spawn(self._accounted(req, ex, record, retry))
            return
        keep = self._upstream_failed(req, route, ex, record, exc)
        self._finish_record(ex, record, req)
        self._complete(keep)

    async def _respond_and_release(
        self,
        req: Incoming,
        route: RouteRuntime,
        ex: Exchange,
        record: dict[str, Any],
        conn: UpstreamConnection,
        head: ResponseHead,
    ) -> bool:
        target = conn.target
        try:
            return await self._respond(req, route, ex, record, conn, head)
        except BaseException:
            conn.abort()
            raise
        finally:
            target.active -= 1

    async def _finish_response_stages(
        self,
        req: Incoming,
        route: RouteRuntime,
        ex: Exchange,
        record: dict[str, Any],
        conn: UpstreamConnection,
        pending: Pending,
    ) -> bool:
        """Response hooks are awaiting; the body is complete already."""
        target = conn.target
        try:
            resp = ex.response
            await route.chain.finish_response(ex, pending)
            final = ex.response
            assert final is not None
            if final is resp or conn.reusable():
                route.pool.release(conn)
            else:
                conn.abort()
            keep = req.keep_alive and not self.server.draining
            self._send_whole(final, req, record, keep, ex.request_id)
            return keep
        except BaseException:
            conn.abort()
            raise
        finally:
            target.active -= 1

    def _stream_head(
        self,
        req: Incoming,
        resp: Response,
        record: dict[str, Any],
        request_id: str,
        keep: bool,
        conn: UpstreamConnection,
    ) -> tuple[bool, _Stream | None]:
        """Send the head of a response whose body streams from ``conn``, and route the body
        chunks to the client. Returns whether the connection stays open, and the stream
        (``None`` when the client is already gone)."""
        has_length = header_get(resp.headers, "content-length") is not None
        forbidden, chunked, keep = streamed_framing(resp.status, req, has_length, keep)
        if self.server.draining:
            keep = False  # shutting down: every answer ends its connection, and says so
        headers = resp.headers
        if chunked:
            headers.append(("transfer-encoding", "chunked"))
        self._finish_headers(headers, keep, request_id)
        transport = self.transport
        record["status"] = resp.status
        if transport is None or self.closed:
            return False, None
        transport.write(status_line(resp.status) + serialize_headers(headers))
        stream = _Stream(chunked)
        if not forbidden:
            conn.set_sink(self._make_sink(conn, stream))
        return keep, stream

    def _make_sink(self, conn: UpstreamConnection, stream: _Stream) -> Callable[[bytes], None]:
        transport = self.transport
        assert transport is not None
        chunked = stream.chunked

        def sink(chunk: bytes) -> None:
            stream.sent += len(chunk)
            if self.closed:
                return
            if chunked:
                transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                transport.write(chunk)
            if self.write_paused and self.paused_upstream is None:
                # Back-pressure: stop reading the upstream until the client catches up.
                conn.pause_reading()
                self.paused_upstream = conn

        return sink

    def _end_stream(
        self, stream: _Stream, conn: UpstreamConnection, pool: UpstreamPool, record: dict[str, Any]
    ) -> None:
        """The upstream body ended: close the chunked body and give the connection back."""
        if stream.chunked and not self.closed and self.transport is not None:
            self.transport.write(b"0\r\n\r\n")
        record["bytes_out"] = stream.sent
        if self.paused_upstream is conn:
            # The last piece arrived just as this client stopped reading: the connection
            # goes back to the pool, reading again (its next exchange must be read).
            self.paused_upstream = None
            conn.resume_reading()
        pool.release(conn)

    # -- one request ----------------------------------------------------------------------
    async def _handle(self, req: Incoming) -> bool:
        """Answer ``req`` in a task (the general path); return whether the connection stays open."""
        record, outcome = self._prelude(req)
        ex: Exchange | None = None
        try:
            if isinstance(outcome, _Refusal):
                return await self._reject(req, record, outcome)
            route, ex = outcome
            return await self._proxy(req, route, ex, record)
        except asyncio.CancelledError:
            record["status"] = record["status"] or 499  # the client went away
            raise
        finally:
            self._finish_record(ex, record, req)

    def _prelude(self, req: Incoming) -> tuple[dict[str, Any], _Refusal | tuple[RouteRuntime, Exchange]]:
        """Everything before the stages, shared by both paths: the request ID, checks that
        need no route, normalisation, routing, and the Exchange the stages will see."""
        runtime = self.server.runtime
        trusted = runtime.is_trusted(self.peer_ip)
        request_id = _request_id(req.headers, trusted)
        record = self._new_record(req, request_id)
        if req.error is not None:
            return record, _Refusal(req.error[0], req.error[1], "http.malformed", request_id)
        if req.upgrade:
            if req.method == "CONNECT":
                return record, _Refusal(501, "CONNECT (tunnelling) is not supported.", "http.connect", request_id)
            return record, _Refusal(
                501, "Protocol upgrades (WebSocket) are not supported yet.", "http.upgrade", request_id
            )
        url = req.url
        host = req.host
        if not url.startswith(b"/") and (url.startswith(b"http://") or url.startswith(b"https://")):
            # Absolute form (RFC 9112 3.2.2): its authority is the host, the Host header is ignored.
            try:
                host, url = split_absolute(url)
            except BadTarget as exc:
                return record, _Refusal(exc.status, exc.detail, "http.target", request_id)
        try:
            path, query, matrix_path = split_target(url, runtime.limits.max_url_bytes)
        except BadTarget as exc:
            return record, _Refusal(exc.status, exc.detail, "http.target", request_id)
        record["path"] = path
        match = runtime.router.match(host, path, req.method, matrix_path)
        if not isinstance(match, Match):
            if match is None:
                return record, _Refusal(404, "No route matches this path.", "route.not_found", request_id)
            return record, _Refusal(
                405,
                "This method is not allowed on this path.",
                "route.method_not_allowed",
                request_id,
                [("allow", ", ".join(match))],
            )
        if match.path is not None:  # a matrix-style route: forward its ;name=value segments
            path = match.path
            record["path"] = path
        route = match.route
        record["route"] = route.id
        record["service"] = route.service
        auth = route.auth_refusal
        if auth is not None:  # decided on the head alone: the client uploads nothing
            return record, _Refusal(
                auth.status, auth.detail, auth.reason, request_id, list(auth.headers), "auth", auth.title
            )
        if route.auth_delegated:
            record["auth"] = "delegated"
        if (req.chunked or req.content_length) and req.method not in route.body_methods:
            # CL.0 smuggling: a backend that never reads a GET's body would parse it as the
            # next request on its pooled connection. Decided from the head (even an empty
            # chunked body is refused), so nothing of the request is forwarded.
            return record, _Refusal(
                400, f"A {req.method} request on this route cannot have a body.", "http.body_not_allowed", request_id
            )
        length = req.content_length if req.content_length is not None else req.buffered
        if length > route.max_body_bytes:
            return record, _Refusal(
                413, "The request body is too large for this route.", "http.body_too_large", request_id
            )
        request = self._build_request(req, path, query, host, trusted)
        request.path_params = match.params
        record["client"] = request.client_ip
        return record, (route, Exchange(request, request_id, route.service, route.id, req.started))

    async def _reject(self, req: Incoming, record: dict[str, Any], refusal: _Refusal) -> bool:
        """Refuse (see ``_refuse``), then read and drop what is left of the body."""
        keep = self._refuse(req, record, refusal)
        if keep and not await self._discard_body(req):
            self._close()
            return False
        return keep

    async def _discard_body(self, req: Incoming) -> bool:
        """Read and drop an unwanted body, if small; tell whether the connection is reusable."""
        if req.complete and req.error is None:
            return True
        if not body_discardable(req):
            return False
        try:
            while (await self._next_chunk(req)) is not None:
                if req.consumed > 64 * 1024:
                    return False
        except _BodyError:
            return False
        return True

    def _build_request(self, req: Incoming, path: str, query: str, host: str, trusted: bool) -> Request:
        runtime = self.server.runtime
        headers: HeaderList = []
        xff: str | None = None
        fproto: str | None = None
        for k, v in strip_hop_by_hop(req.headers) if req.has_connection else req.headers:
            if k in HOP_BY_HOP:
                continue
            if k in FORWARDING_HEADERS:
                if trusted:
                    if k == "x-forwarded-for":
                        xff = v if xff is None else f"{xff}, {v}"
                    elif k == "x-forwarded-proto" and v in ("http", "https"):
                        fproto = v
                continue
            headers.append((k, v))
        client_ip = self.peer_ip
        chain = [self.peer_ip]
        if xff:
            hops = [h.strip() for h in xff.split(",") if h.strip()]
            chain = [*hops, self.peer_ip]
            # The client is the right-most address not belonging to a trusted proxy.
            for hop in reversed(hops):
                client_ip = hop
                if not runtime.is_trusted(hop):
                    break
        scheme = fproto or self.scheme
        request = Request(
            req.method,
            req.url.decode("latin-1"),
            path,
            query,
            headers,
            client_ip=client_ip,
            scheme=scheme,
            host=host,
            http_version=req.version,
        )
        request.forwarded_for = chain
        return request

    async def _read_body(self, req: Incoming, limit: int) -> bytes:
        parts: list[bytes] = []
        while True:
            chunk = await self._next_chunk(req)
            if chunk is None:
                return b"".join(parts)
            parts.append(chunk)
            if req.consumed > limit:
                raise _BodyError(413, "The request body is too large for this route.")

    async def _next_chunk(self, req: Incoming) -> bytes | None:
        """The next piece of the request body; ``None`` at its end."""
        if req.expect_continue and not req.continue_sent:
            req.continue_sent = True
            if not req.complete and self.transport is not None:
                self.transport.write(_CONTINUE)
        while True:
            if req.error is not None:
                raise _BodyError(*req.error)
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
            self._arm(self.server.runtime.timeouts.body, "body")
            try:
                await req.waiter
            finally:
                req.waiter = None
                if self.timer_kind == "body":
                    self._cancel_timer()

    async def _proxy(self, req: Incoming, route: RouteRuntime, ex: Exchange, record: dict[str, Any]) -> bool:
        chain: Chain = route.chain
        request = ex.request
        body: bytes | None = None
        # A body already received in full is sent in one write with the head (and can be
        # replayed on a retry); otherwise it streams.
        if req.complete and req.error is None and not req.expect_continue:
            # The whole body (often none) is already here; the prelude checked its size.
            body = req.take_buffered()
            if chain.needs_request_body:
                request.body = body
        elif chain.needs_request_body or req.complete:
            try:
                body = await self._read_body(req, route.max_body_bytes)
            except _BodyError as exc:
                return await self._reject(req, record, _Refusal(exc.status, exc.detail, "http.body", ex.request_id))
            request.body = body if chain.needs_request_body else None
        record["bytes_in"] = req.consumed
        if chain.request_stages:
            answer = await chain.run_request(ex)
            if answer is not None:
                ex.response = answer
                await chain.run_response(ex)
                resp = ex.response
                keep = req.keep_alive and await self._discard_body(req)
                self._send_whole(resp, req, record, keep, ex.request_id)
                return keep
        try:
            return await self._forward(req, route, ex, record, body)
        except _BodyError as exc:
            return await self._reject(req, record, _Refusal(exc.status, exc.detail, "http.body", ex.request_id))

    def _upstream_head(self, ex: Exchange, target: TargetState, body_len: int | None) -> bytes:
        """The request head Bastion sends upstream: its own framing and forwarding headers."""
        request = ex.request
        query = request.query
        client = request.client_ip
        scheme = request.scheme
        host = request.host
        if body_len is None:
            framing = "transfer-encoding: chunked\r\n"
        elif body_len or request.method in ("POST", "PUT", "PATCH"):
            framing = f"content-length: {body_len}\r\n"
        else:
            framing = ""
        forwarded_host = f';host="{host}"\r\nx-forwarded-host: {host}\r\n' if host else "\r\n"
        node = f'"[{client}]"' if ":" in client else client
        headers = "".join([f"{k}: {v}\r\n" for k, v in request.headers if k != "host" and k != "content-length"])
        return (
            f"{request.method} {target.base_path}{request.path}{'?' if query else ''}{query} HTTP/1.1\r\n"
            f"{target.host_line}{headers}"
            f"x-forwarded-for: {', '.join(request.forwarded_for)}\r\nx-forwarded-proto: {scheme}\r\n"
            f"forwarded: for={node};proto={scheme}{forwarded_host}"
            f"x-request-id: {ex.request_id}\r\n{framing}\r\n"
        ).encode("latin-1")

    async def _forward(
        self,
        req: Incoming,
        route: RouteRuntime,
        ex: Exchange,
        record: dict[str, Any],
        body: bytes | None,
        *,
        exclude: TargetState | None = None,
        attempts_used: int = 0,
        first: TargetState | None = None,
    ) -> bool:
        pool: UpstreamPool = route.pool
        cfg = pool.config
        loop_time = time.monotonic
        deadline = loop_time() + cfg.timeouts.total
        request = ex.request
        replayable = body is not None
        attempts = 1 + cfg.retries if (request.method in IDEMPOTENT_METHODS and replayable) else 1
        target: TargetState | None = exclude
        conn: UpstreamConnection | None = None
        head = None
        for attempt in range(attempts_used, attempts):
            try:
                if first is not None:
                    target, first = first, None
                else:
                    target = pool.choose(exclude=target)
            except UpstreamError as exc:
                return self._upstream_failed(req, route, ex, record, exc)
            target.active += 1
            try:
                conn = pool.pooled(target)
                if conn is None:
                    conn = await pool.acquire(target, deadline)
                if body is not None:
                    conn.begin(request.method, deadline, cfg.timeouts.read)
                    conn.write(self._upstream_head(ex, target, len(body)) + body)
                    conn.end_request()
                else:
                    # The read timeout counts from the end of the upload, not its start.
                    conn.begin(request.method, deadline, cfg.timeouts.read, read_timer=False)
                    await self._stream_request_body(req, ex, target, conn, route.max_body_bytes)
                    conn.end_request()
                    conn.start_read_timer()
                head = await conn.response_head()
                break
            except UpstreamError as exc:
                target.active -= 1
                target.record_failure(loop_time())
                if conn is not None:
                    conn.abort()
                    conn = None
                METRICS.inc("bastion_upstream_errors", (route.service, exc.kind))
                if exc.retryable and attempt + 1 < attempts and loop_time() < deadline:
                    continue
                return self._upstream_failed(req, route, ex, record, exc)
            except BaseException:
                target.active -= 1
                if conn is not None:
                    conn.abort()
                raise
        assert head is not None and conn is not None and target is not None
        record["upstream"] = target.url
        try:
            if head.status in (502, 503, 504):
                target.record_failure(loop_time())
            else:
                target.record_success()
            return await self._respond(req, route, ex, record, conn, head)
        except BaseException:
            conn.abort()  # never pool a connection whose exchange was interrupted
            raise
        finally:
            target.active -= 1

    async def _stream_request_body(
        self, req: Incoming, ex: Exchange, target: TargetState, conn: UpstreamConnection, limit: int
    ) -> None:
        """Send the head, then the body as it arrives (chunked unless the length is known)."""
        length = req.content_length
        conn.write(self._upstream_head(ex, target, length))
        while True:
            chunk = await self._next_chunk(req)
            if chunk is None:
                break
            if req.consumed > limit:
                raise _BodyError(413, "The request body is too large for this route.")
            if length is None:
                conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                conn.write(chunk)
            await conn.drain()
        if length is None:
            conn.write(b"0\r\n\r\n")
        ex.request.body = None

    def _upstream_failed(
        self, req: Incoming, route: RouteRuntime, ex: Exchange, record: dict[str, Any], exc: UpstreamError
    ) -> bool:
        log.warning("upstream failure for %s (request %s): %s", route.service, ex.request_id, exc)
        record["upstream_error"] = exc.kind
        titles = {
            502: "The upstream service failed to answer.",
            503: "The upstream service is unavailable.",
            504: "The upstream service did not answer in time.",
        }
        resp = problem_response(exc.status, titles.get(exc.status, "Upstream failure."), ex.request_id)
        ex.response = resp
        keep = req.keep_alive and req.complete and req.error is None
        self._send_whole(resp, req, record, keep, ex.request_id)
        return keep

    async def _respond(
        self,
        req: Incoming,
        route: RouteRuntime,
        ex: Exchange,
        record: dict[str, Any],
        conn: UpstreamConnection,
        head: Any,
    ) -> bool:
        chain = route.chain
        pool = route.pool
        resp = Response(head.status, head.headers, None)  # hop-by-hop already dropped
        ex.response = resp
        if chain.needs_response_body:
            resp.body = await conn.read_body_into(route.max_body_bytes)
        else:
            resp.body = conn.take_complete_body()
        if chain.response_stages:
            await chain.run_response(ex)
        final = ex.response
        keep = req.keep_alive and not self.server.draining and req.complete and req.error is None
        if final is not resp or resp.body is not None:
            # The body is known in full (buffered, or replaced by a stage).
            if final is not resp and not conn.reusable():
                conn.abort()  # we will not read the rest of the upstream body
            else:
                if resp.body is None:
                    await conn.read_body_into(route.max_body_bytes)
                pool.release(conn)
            self._send_whole(final, req, record, keep, ex.request_id)
            return keep
        # Stream the upstream body through.
        keep, stream = self._stream_head(req, resp, record, ex.request_id, keep, conn)
        if stream is None:
            conn.abort()
            raise ClientGone()
        try:
            await conn.wait_done()
        except UpstreamError as exc:
            # The head is out: the only honest signal left is to cut the connection.
            log.warning("upstream body failed for %s (request %s): %s", route.service, ex.request_id, exc)
            record["upstream_error"] = exc.kind
            record["bytes_out"] = stream.sent
            conn.abort()
            self.abort()
            return False
        finally:
            if self.paused_upstream is conn:
                self.paused_upstream = None
        self._end_stream(stream, conn, pool, record)
        if not keep:
            self._close()
        return keep

    def _finish_headers(self, headers: HeaderList, keep: bool, request_id: str) -> None:
        headers.append(("x-request-id", request_id))
        hsts = self.server.runtime.hsts
        if hsts is not None and self.scheme == "https":
            headers.append(("strict-transport-security", hsts))
        if not keep:
            headers.append(("connection", "close"))
            self.close_sent = True

    def _send_whole(self, resp: Response, req: Incoming, record: dict[str, Any], keep: bool, request_id: str) -> None:
        """Write a response whose body is known in full, head and body in one write."""
        block = "".join(
            [f"{k}: {v}\r\n" for k, v in resp.headers if k != "content-length" and k != "transfer-encoding"]
        ).encode("latin-1")
        length = header_get(resp.headers, "content-length")
        self._write_whole(resp.status, block, length, resp.body or b"", req, record, keep, request_id)

    def _send_upstream(
        self, head: ResponseHead, body: bytes, req: Incoming, record: dict[str, Any], keep: bool, request_id: str
    ) -> None:
        """Like ``_send_whole`` for an upstream response no stage looked at: its headers go
        out as the bytes they came in (names lower-cased), never decoded."""
        length: str | None = None
        parts = []
        for k, v in head.raw:
            if k == b"content-length":
                length = v.decode("latin-1")
                continue
            parts.append(b"%b: %b\r\n" % (k, v))
        self._write_whole(head.status, b"".join(parts), length, body, req, record, keep, request_id)

    def _write_whole(
        self,
        status: int,
        block: bytes,
        declared_length: str | None,
        body: bytes,
        req: Incoming,
        record: dict[str, Any],
        keep: bool,
        request_id: str,
    ) -> None:
        if body_forbidden(status, req.method):
            tail = ""
            if req.method == "HEAD" and status not in (204, 304):
                # A HEAD answer tells the length the GET body would have.
                tail = f"content-length: {declared_length if declared_length is not None else len(body)}\r\n"
            body = b""
        else:
            tail = f"content-length: {len(body)}\r\n"
        tail += f"x-request-id: {request_id}\r\n"
        if self.scheme == "https" and self.server.runtime.hsts is not None:
            tail += f"strict-transport-security: {self.server.runtime.hsts}\r\n"
        if self.server.draining:
            keep = False  # shutting down: every answer ends its connection, and says so
        if not keep:
            tail += "connection: close\r\n"
            self.close_sent = True
        record["status"] = status
        record["bytes_out"] = len(body)
        if self.transport is not None and not self.closed:
            self.transport.write(status_line(status) + block + tail.encode("latin-1") + b"\r\n" + body)
        if not keep:
            self._close()


class _Stream:
    """A response body streaming from the upstream to the client."""

    __slots__ = ("chunked", "sent")

    def __init__(self, chunked: bool) -> None:
        self.chunked = chunked
        self.sent = 0


class _Flight(UpstreamListener):
    """A fast-path exchange waiting on its upstream connection's callbacks."""

    __slots__ = (
        "body",
        "client",
        "conn",
        "deadline",
        "ex",
        "keep",
        "record",
        "req",
        "route",
        "stream",
        "target",
    )

    def __init__(
        self,
        client: ClientConnection,
        req: Incoming,
        route: RouteRuntime,
        ex: Exchange,
        record: dict[str, Any],
        body: bytes,
        target: TargetState,
        conn: UpstreamConnection,
    ) -> None:
        self.client = client
        self.req = req
        self.route = route
        self.ex = ex
        self.record = record
        self.body = body
        self.target = target
        self.conn = conn
        self.deadline = 0.0
        self.keep = True
        #: Set once the response head is sent and the body streams through.
        self.stream: _Stream | None = None

    def upstream_head(self, conn: UpstreamConnection) -> None:
        self.client._flight_response(self)

    def upstream_done(self, conn: UpstreamConnection) -> None:
        if self.stream is not None:
            self.client._flight_done(self)

    def upstream_failed(self, conn: UpstreamConnection, exc: UpstreamError) -> None:
        self.client._flight_failed(self, exc)

    def abandon(self) -> None:
        """The client went away mid-exchange: drop the upstream connection, log a 499."""
        conn = self.conn
        conn.detach()
        conn.abort()
        self.target.active -= 1
        self.record["status"] = self.record["status"] or 499
        if self.stream is not None:
            self.record["bytes_out"] = self.stream.sent
        self.client._finish_record(self.ex, self.record, self.req)


class _Refusal(NamedTuple):
    """A refusal decided before any stage ran (arguments of ``_reject``)."""

    status: int
    detail: str
    reason: str
    request_id: str
    extra: HeaderList | None = None
    #: Who refused, for the access log and metrics: the core, or a stage decided at load
    #: whose refusal needs only the head (auth).
    stage: str = "core"
    title: str | None = None


class _BodyError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class _RequestIds:
    """Request IDs: unique, not secret. A random 64-bit prefix per worker process and a
    counter give 32 hex digits with no system call and no random draw per request."""

    def __init__(self) -> None:
        # Workers are started as new interpreters (never forked), so each draws its own.
        self.prefix = os.urandom(8).hex()
        self.count = 0

    def next(self) -> str:
        self.count += 1
        return f"{self.prefix}{self.count:016x}"


_ids = _RequestIds()


def _request_id(headers: HeaderList, trusted: bool) -> str:
    if trusted:
        incoming = header_get(headers, "x-request-id")
        if incoming and len(incoming) <= 128 and not incoming.strip(_REQUEST_ID_CHARS):
            return incoming
    return _ids.next()


__all__ = ["ClientConnection", "GatewayServer"]
