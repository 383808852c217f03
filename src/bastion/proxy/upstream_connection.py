"""One pooled HTTP/1.1 connection to an upstream target, and the response it reads.

The connection writes a head Bastion serialised itself (so the upstream only ever sees
Bastion's framing) and reads the response with llhttp, one exchange at a time, followed
either with futures or with plain callbacks (:class:`UpstreamListener`). The pool that
lends these connections, the balancing, health checks and circuit breaker are in
:mod:`bastion.proxy.upstream`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import httptools

from bastion.proxy.http import HOP_BY_HOP
from bastion.proxy.upstream_errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamResponseTooLarge,
    UpstreamTimeout,
)
from bastion.types import HeaderList

if TYPE_CHECKING:
    from bastion.proxy.upstream import TargetState

log = logging.getLogger("bastion.upstream")

_HOP_BY_HOP_BYTES = frozenset(name.encode("latin-1") for name in HOP_BY_HOP)
#: An exchange begun without a bound on its response body (a health check).
UNBOUNDED = 1 << 62


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


class _TooLarge(Exception):
    """Raised in a parser callback: the response body is (or announces) more than the
    exchange's bound; ``data_received`` fails the exchange once the parser has stopped."""


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
        #: The most response body bytes this exchange may read, and how many it has read.
        self._max_body = UNBOUNDED
        self._body_read = 0
        #: The response crossed ``_max_body`` (the parser was stopped for it).
        self._too_large = False

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
            if self._too_large:
                self._fail(UpstreamResponseTooLarge(
                    f"{self.target.url} answered a body larger than the route's limit of {self._max_body} bytes"
                ))
                self.close()
                return
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
        length = b""
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
                length = raw_value
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
        has_body = self._method != "HEAD" and status not in (204, 304)
        self._close_delimited = has_body and not self._framed
        if has_body and length.isdigit() and int(length) > self._max_body:
            # Announced too large: refused before anyone sends a head for it, none of it read.
            self._too_large = True
            raise _TooLarge()
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
        read = self._body_read + len(body)
        self._body_read = read
        if read > self._max_body:
            # Counted before the sink sees it: what crosses the bound is never forwarded.
            self._too_large = True
            raise _TooLarge()
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
        max_body: int = UNBOUNDED,
    ) -> None:
        """Start an exchange: fresh parser state, and futures unless a listener is given.
        A response body over ``max_body`` bytes fails it (:class:`UpstreamResponseTooLarge`)."""
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
        self._max_body = max_body
        self._body_read = 0
        self._too_large = False
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
