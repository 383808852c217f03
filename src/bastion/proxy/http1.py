"""The client side's HTTP/1.1 rules, with no I/O: bytes in, parsed requests and events out.

:class:`RequestReader` feeds what a client sent to llhttp (httptools), refuses what llhttp
accepts but a strict gateway must not (the smuggling vectors: ``Transfer-Encoding`` other
than exactly ``chunked`` or more than once, HTTP/1.0 with ``Transfer-Encoding``, a missing,
repeated or invalid ``Host``, versions other than HTTP/1.x), bounds the head, and queues
each request as an :class:`Incoming` whose body collects as it arrives. Each call returns
the events the owner must act on, as bit flags (:data:`STARTED`, :data:`HEAD`,
:data:`DATA`, :data:`FAILED`, :data:`PAUSE`): arm or stop a timer, wake a body reader,
answer a broken request, pause reading. The connection (``server.py``) only moves the bytes
and runs the timers; the tests drive this module with byte transcripts and no socket.

The functions at the end decide what HTTP/1.1 decides from a request alone: whether a
refused request's connection can stay open, how a streamed response is framed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import httptools

from bastion.config.model import Limits
from bastion.proxy.http import body_forbidden
from bastion.proxy.limits import HEADER_TOO_LARGE, TOO_MANY_HEADERS, URL_TOO_LONG
from bastion.types import HeaderList

#: Unread request body held per connection before reading from the client pauses.
BODY_BUFFER_HIGH = 1024 * 1024
#: Pipelined request heads queued before reading from the client pauses.
MAX_QUEUED = 16
#: A refused request's unread body smaller than this is read and dropped to keep the
#: connection; a larger one closes it (cheaper than reading it).
DISCARD_LIMIT = 64 * 1024
#: Request headers that decide framing and routing: checked once the head is complete.
_FRAMING = frozenset({"transfer-encoding", "content-length", "host", "expect", "connection"})
#: Characters of a Host header value (a name or IP literal and a port). ``str.strip`` with
#: this set leaves nothing of a valid value: a set test in C, not a loop in Python.
HOST_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]_"

# What a call of the reader reports (bit flags; plain ints, so reporting costs no call).
#: A request head began (the header timeout starts, unless a request is being answered).
STARTED = 1
#: A head was completed and queued (the header timeout ends).
HEAD = 2
#: A request got body bytes, its end or an error: a reader waiting for its body may go on.
DATA = 4
#: The input is broken: a request carrying the error was queued, and parsing stopped.
FAILED = 8
#: Enough is buffered (heads or body), or parsing stopped: stop reading from the client.
PAUSE = 16


class Incoming:
    """A request head parsed off the wire, with its body as it arrives."""

    __slots__ = (
        "buffered",
        "chunked",
        "chunks",
        "complete",
        "consumed",
        "content_length",
        "continue_sent",
        "error",
        "expect_continue",
        "has_connection",
        "head_bytes",
        "headers",
        "host",
        "keep_alive",
        "method",
        "parse_error",
        "reason",
        "started",
        "upgrade",
        "url",
        "version",
        "waiter",
    )

    def __init__(self) -> None:
        self.method = "GET"
        self.url = b""
        self.headers: HeaderList = []
        self.version = "1.1"
        self.keep_alive = True
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.consumed = 0
        self.complete = False
        #: Set by a task waiting for more of the body (the connection wakes it).
        self.waiter: asyncio.Future[None] | None = None
        self.error: tuple[int, str] | None = None
        #: Why ``error`` was set, for the access record and metrics (``http.*``, see
        #: ``bastion.proxy.limits``).
        self.reason = "http.malformed"
        self.parse_error = False
        self.expect_continue = False
        self.continue_sent = False
        self.content_length: int | None = None
        self.chunked = False
        self.upgrade = False
        self.has_connection = False
        self.host = ""  # the Host header, checked while framing was
        #: Bytes of the header fields as counted against ``max_header_bytes``.
        self.head_bytes = 0
        self.started = time.perf_counter()

    def take_buffered(self) -> bytes:
        """Everything of the body received so far, as one ``bytes``, now consumed."""
        chunks = self.chunks
        body = b"".join(chunks) if len(chunks) != 1 else chunks[0]
        self.consumed += self.buffered
        self.buffered = 0
        chunks.clear()
        return body

    def pop_chunk(self) -> bytes | None:
        """The oldest unread piece of the body, now consumed; ``None`` if none is buffered."""
        if not self.chunks:
            return None
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        self.consumed += len(chunk)
        return chunk


class Reject(Exception):
    """Raised inside parser callbacks: llhttp stops and the request gets this status."""

    def __init__(self, status: int, detail: str, reason: str = "http.malformed") -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.reason = reason


class RequestReader:
    """Parses one connection's requests into a queue of :class:`Incoming`, strictly."""

    __slots__ = (
        "_framing",
        "_head_bytes",
        "_headers",
        "_max_header_bytes",
        "_max_headers",
        "_max_url_bytes",
        "_reject",
        "_url",
        "current",
        "dead",
        "events",
        "limits",
        "parser",
        "queue",
        "receiving",
    )

    def __init__(self, limits: Limits) -> None:
        #: What happened during the current call (flags), returned by it.
        self.events = 0
        #: Bounds on heads; the owner may replace them between requests (a reload), with
        #: :meth:`use_limits`.
        self.limits = limits
        self._max_url_bytes = limits.max_url_bytes
        self._max_header_bytes = limits.max_header_bytes
        self._max_headers = limits.max_headers
        self.parser = httptools.HttpRequestParser(self)
        # llhttp refuses versions it does not know (HTTP/1.2) before Bastion sees them; RFC
        # 9112 2.5 wants a higher HTTP/1 minor version served as 1.1. With this leniency
        # llhttp only passes the version through: ``check_framing`` decides, and refuses
        # anything that is not HTTP/1.x.
        self.parser.set_dangerous_leniencies(lenient_version=True)
        #: Requests parsed and not yet answered, oldest first (the owner pops them).
        self.queue: deque[Incoming] = deque()
        #: The request whose head or body is being received.
        self.current: Incoming | None = None
        #: A request head is partly received (the connection is not idle).
        self.receiving = False
        #: Nothing more is parsed: an error, an upgrade, the client's end of input.
        self.dead = False
        self._url = b""
        self._headers: HeaderList = []
        self._framing: HeaderList = []
        self._head_bytes = 0
        #: The refusal a callback raised, kept here as well: httptools hands it back as the
        #: parser error's ``__context__``, but a raise while another exception is being
        #: handled (one left set by an interrupted coroutine, say) replaces that context.
        self._reject: Reject | None = None

    def use_limits(self, limits: Limits) -> None:
        """Bound the next heads by ``limits``. The bounds are copied as plain integers: a
        read of the (interpreted) settings model costs 350-1,000 instructions, and the head's
        callbacks check them once for the target and twice for every header."""
        self.limits = limits
        self._max_url_bytes = limits.max_url_bytes
        self._max_header_bytes = limits.max_header_bytes
        self._max_headers = limits.max_headers

    def feed(self, data: bytes) -> int:
        """Parse ``data``; return what happened. A protocol error queues a request carrying
        it, and stops parsing."""
        self.events = 0
        if self.dead:
            return 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The head of an Upgrade request is queued (marked); nothing after it is HTTP.
            self.stop()
        except httptools.HttpParserError as exc:
            cause = self._reject if self._reject is not None else exc.__context__
            if isinstance(cause, Reject):
                self._fail(cause.status, cause.detail, cause.reason)
            else:
                self._fail(400, f"Malformed HTTP request: {llhttp_reason(exc)}.", "http.malformed")
        return self.events

    def fail(self, status: int, detail: str, reason: str) -> int:
        """Queue a request that is answered ``status`` and ends the connection (a timeout,
        say; ``reason`` goes to its record); stop parsing. Returns what happened."""
        self.events = 0
        self._fail(status, detail, reason)
        return self.events

    def _fail(self, status: int, detail: str, reason: str) -> None:
        req = Incoming()
        req.error = (status, detail)
        req.reason = reason
        req.parse_error = True
        req.keep_alive = False
        cur = self.current
        if cur is not None and not cur.complete and cur in self.queue:
            # The request being received is broken: its handler must not use its body.
            cur.error = (status, detail)
            cur.reason = reason
            self.events |= DATA
        self.queue.append(req)
        self.dead = True
        self.events |= FAILED | PAUSE

    def end_of_input(self) -> int:
        """The client half-closed: a body still expected is cut short; nothing more comes.
        Returns what happened."""
        self.events = 0
        cur = self.current
        if cur is not None and not cur.complete and cur in self.queue:
            cur.error = (400, "The request body was cut short.")
            cur.reason = "http.body"
            self.events |= DATA
        self.dead = True
        return self.events

    def stop(self) -> None:
        """Parse nothing more (and read nothing more)."""
        self.dead = True
        self.events |= PAUSE

    def _refuse(self, reject: Reject) -> Reject:
        self._reject = reject
        return reject

    # -- httptools callbacks ----------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._framing = []
        self._head_bytes = 0
        self.current = None
        self.receiving = True
        self.events |= STARTED

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._max_url_bytes:
            raise self._refuse(Reject(414, "The request target is too long.", URL_TOO_LONG))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self._max_header_bytes:
            raise self._refuse(Reject(431, "The request header fields are too large.", HEADER_TOO_LARGE))
        if len(self._headers) >= self._max_headers:
            raise self._refuse(Reject(431, "The request has too many header fields.", TOO_MANY_HEADERS))
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._headers.append((key, text))
        if key in _FRAMING:
            self._framing.append((key, text))

    def on_headers_complete(self) -> None:
        parser = self.parser
        req = Incoming()
        req.method = parser.get_method().decode("ascii")
        req.url = self._url
        req.headers = self._headers
        req.head_bytes = self._head_bytes
        req.version = parser.get_http_version()
        req.keep_alive = parser.should_keep_alive()
        try:
            check_framing(req, self._framing)
        except Reject as exc:
            raise self._refuse(exc) from None
        if parser.should_upgrade():
            req.upgrade = True
        self.receiving = False
        self.current = req
        self.queue.append(req)
        if len(self.queue) > MAX_QUEUED:
            self.events |= PAUSE
        self.events |= HEAD

    def on_body(self, body: bytes) -> None:
        req = self.current
        if req is None:
            return
        req.chunks.append(body)
        req.buffered += len(body)
        if req.buffered > BODY_BUFFER_HIGH:
            self.events |= PAUSE
        self.events |= DATA

    def on_message_complete(self) -> None:
        req = self.current
        if req is not None:
            req.complete = True
            self.events |= DATA


def check_framing(req: Incoming, framing: HeaderList) -> None:
    """Refuse what llhttp accepts but a strict gateway must not (smuggling vectors).

    llhttp itself refuses duplicate or non-numeric ``Content-Length``, ``Content-Length``
    with ``Transfer-Encoding`` (without its lenient flags), obs-fold, control characters
    and invalid chunk sizes."""
    te_seen = 0
    host_seen = 0
    for k, v in framing:
        if k == "transfer-encoding":
            te_seen += 1
            if v.strip().lower() != "chunked":
                raise Reject(400, "Transfer-Encoding must be exactly 'chunked'.")
            req.chunked = True
        elif k == "content-length":
            req.content_length = int(v)  # llhttp already refused non-digits and duplicates
        elif k == "host":
            host_seen += 1
            if not v or v.strip(HOST_CHARS):
                raise Reject(400, "The Host header is not a valid host name.")
            req.host = v
        elif k == "connection":
            req.has_connection = True
        elif k == "expect":
            if v.strip().lower() != "100-continue":
                raise Reject(417, "Only 'Expect: 100-continue' is supported.")
            req.expect_continue = True
    if te_seen > 1:
        raise Reject(400, "Transfer-Encoding must appear once.")
    if req.version not in ("1.1", "1.0"):
        if not req.version.startswith("1."):  # 0.9, 2.0 and others: not HTTP/1 at all
            raise Reject(400, "The request line must end with HTTP/1.1 or HTTP/1.0.")
        req.version = "1.1"  # HTTP/1.2 and up: served as 1.1 (RFC 9112 2.5)
    if req.chunked and req.version == "1.0":
        raise Reject(400, "HTTP/1.0 requests cannot use Transfer-Encoding.")
    if host_seen != 1 and req.version == "1.1":
        raise Reject(400, "HTTP/1.1 requests need exactly one Host header.")


def llhttp_reason(exc: Exception) -> str:
    """llhttp's reason for refusing the input, short (a fixed string, never client bytes)."""
    cause = exc.__context__
    if isinstance(cause, Reject):
        return cause.detail
    text = str(exc).strip().rstrip(".")
    return text[:120] or "invalid syntax"


# -- decisions from a request alone -----------------------------------------------------
def body_discardable(req: Incoming) -> bool:
    """Whether what is left of an unwanted body can be read and dropped (keeping the
    connection), rather than the connection closed."""
    if req.complete:
        return req.error is None
    if req.error is not None or (req.expect_continue and not req.continue_sent):
        return False  # the client has not sent it; closing is cheaper than asking for it
    return req.content_length is not None and req.content_length - req.consumed <= DISCARD_LIMIT


def keeps_alive_after_refusal(req: Incoming, draining: bool) -> bool:
    """A refused request keeps its connection only when it is well-formed and what is left
    of its (small) body can be dropped."""
    return req.keep_alive and not req.parse_error and not req.upgrade and not draining and body_discardable(req)


def streamed_framing(status: int, req: Incoming, has_length: bool, keep: bool) -> tuple[bool, bool, bool]:
    """How a response whose body streams is framed: ``(body_forbidden, chunked, keep)``.

    An HTTP/1.0 client of a body of unknown length learns its end from the close."""
    forbidden = body_forbidden(status, req.method)
    chunked = not forbidden and not has_length and req.version == "1.1"
    if not forbidden and not has_length and not chunked:
        keep = False
    return forbidden, chunked, keep


def whole_framing(status: int, method: str, declared_length: str | None, body: bytes) -> tuple[str, bytes]:
    """How a response whose body is known in full is framed: its ``content-length`` line
    and the body to send (none when the status or method forbids one; a HEAD answer still
    tells the length the GET body would have)."""
    if body_forbidden(status, method):
        if method == "HEAD" and status not in (204, 304):
            return f"content-length: {declared_length if declared_length is not None else len(body)}\r\n", b""
        return "", b""
    return f"content-length: {len(body)}\r\n", body


__all__ = [
    "BODY_BUFFER_HIGH",
    "DATA",
    "FAILED",
    "HEAD",
    "MAX_QUEUED",
    "PAUSE",
    "STARTED",
    "Incoming",
    "Reject",
    "RequestReader",
    "body_discardable",
    "check_framing",
    "keeps_alive_after_refusal",
    "streamed_framing",
    "whole_framing",
]
