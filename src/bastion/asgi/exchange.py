"""One HTTP request of the embedded mode: the gateway's steps, with the application as the
upstream and ASGI messages in place of sockets.

The request head goes through the gateway's own :func:`~bastion.proxy.prelude.prelude`
(request ID, routing and deny-by-default, head limits, the body rules, the exchange the
stages see), then the route's :class:`~bastion.pipeline.chain.Chain` as the proxy drives
it: head hooks before any of the body is received, the body read whole only where a stage
needs it (held to the route's ``max_body_bytes`` and JSON limits), the request hooks, then
the application. Its ``http.response.*`` messages go back through the response hooks
(reverse order; the whole body buffered, up to ``max_response_body_bytes``, only where a
stage needs it) and the body hooks, piece by piece as the application sends them. The
record goes to the same record sinks as the gateway's (metrics, the access log, audit,
detectors).

The application sees the request as the gateway's upstream would: the normalised path
Bastion routed on, the headers the stages left (an API key Bastion verified is not
passed on), ``X-Request-ID`` set; ``client``, ``server`` and ``scheme`` as the server gave
them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Final, NoReturn
from urllib.parse import quote, unquote

from bastion.errors import problem_response
from bastion.pipeline.chain import BodyFilter, Pending
from bastion.proxy.coding import DecodeError, Gunzip, coding_of, gunzip_whole, without_coding
from bastion.proxy.http import body_forbidden
from bastion.proxy.http1 import Incoming
from bastion.proxy.jsonscan import over_body_json_limits
from bastion.proxy.limits import BODY_TOO_LARGE
from bastion.proxy.prelude import Refusal, prelude
from bastion.proxy.record import RecordDraft, RecordSinks, finish_record
from bastion.proxy.runtime import RouteRuntime, Runtime
from bastion.types import Decision, Exchange, HeaderList, Response, header_get

if TYPE_CHECKING:
    from bastion.asgi.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("bastion.asgi")

#: The name under which the proxy records its decisions on response bodies (as respond.py).
_RESPONSE_BODY = "http.response_body"
_OVER_LIMIT = "response body over max_response_body_bytes"
_DISCONNECT: dict[str, str] = {"type": "http.disconnect"}
#: HTTP versions whose request bodies are framed by their head (no framing header: no body).
_FRAMED = ("1.0", "1.1")
#: ASGI extensions whose messages carry a response body outside ``http.response.body``.
_BODY_ELSEWHERE = ("http.response.pathsend", "http.response.zerocopy")
#: Header names servers and applications commonly send, as they send them (lower case),
#: decoded once: such a name is a dictionary lookup, not a decode and a ``lower()`` (~430
#: instructions a field, callgrind). Fixed: the names a client sends never grow it.
_KNOWN_NAMES: Final[dict[bytes, str]] = {
    name.encode("latin-1"): name
    for name in (
        "accept", "accept-encoding", "accept-language", "authorization", "cache-control", "connection",
        "content-encoding", "content-length", "content-type", "cookie", "date", "etag", "host",
        "last-modified", "location", "origin", "referer", "server", "set-cookie", "transfer-encoding",
        "user-agent", "vary", "x-api-key", "x-forwarded-for", "x-forwarded-proto", "x-request-id",
    )
}  # fmt: skip


class Cut(Exception):
    """A body hook failed closed while the response streamed: its head is out, so the
    only honest signal left is to break the connection (the server does, on this error)."""


def incoming_of(scope: Scope) -> Incoming:
    """The request head as the gateway's prelude reads it, from an ASGI ``http`` scope."""
    fields = _as_dict(scope)
    req = Incoming()
    req.method = fields["method"]
    raw_path: bytes | None = fields.get("raw_path")
    if raw_path is None:  # optional in ASGI: ``path`` is decoded, encode it again
        raw_path = quote(fields["path"], safe="/:@!$&'()*+,;=-._~").encode("ascii")
    query: bytes = fields.get("query_string", b"")
    req.url = raw_path + b"?" + query if query else raw_path
    headers: HeaderList = []
    size = 0
    lengths: list[str] = []
    for field in fields.get("headers", ()):
        key, text = _decoded(field)
        headers.append((key, text))
        size += len(key) + len(text) + 4
        if key == "content-length":
            lengths.append(text)
        elif key == "transfer-encoding":
            req.chunked = True
        elif key == "connection":
            req.has_connection = True
        elif key == "host":
            req.host = text
    req.headers = headers
    req.head_bytes = size
    req.version = fields.get("http_version", "1.1")
    if lengths:
        if len(lengths) > 1 or not lengths[0].isdigit():
            req.error = (400, "The request's Content-Length is invalid.")
        else:
            req.content_length = int(lengths[0])
    return req


def _as_dict(mapping: MutableMapping[str, Any]) -> dict[str, Any]:
    """An ASGI scope or message as the dict the specification says it is (another mapping
    is copied): typed so, the compiled module reads it with C dict calls, where a
    ``MutableMapping``'s ``get`` is a Python method call (~450 instructions, callgrind)."""
    return mapping if isinstance(mapping, dict) else dict(mapping)


def _decoded(field: Any) -> tuple[str, str]:
    """An ASGI header field (a pair of byte strings, tuple or list) as the gateway's parser
    gives it: the name lower-case, both latin-1. Typed ``bytes``, the compiled module
    decodes and lowers them in C: through ``Any`` each was a Python method call (~500
    instructions apiece, callgrind)."""
    first, second = field[0], field[1]
    # ASGI says bytes; another bytes-like object (a bytearray) is read as before.
    name: bytes = first if isinstance(first, bytes) else bytes(first)
    value: bytes = second if isinstance(second, bytes) else bytes(second)
    known = _KNOWN_NAMES.get(name)
    return known if known is not None else name.decode("latin-1").lower(), value.decode("latin-1")


class EmbeddedExchange:
    """One request, from its scope to its record."""

    __slots__ = (
        "_receive",
        "_send",
        "app",
        "app_headers",
        "app_raw_headers",
        "body",
        "body_filter",
        "body_refusal",
        "buffered",
        "buffered_size",
        "cut",
        "decoder",
        "dropping",
        "ex",
        "forwarded",
        "head_sent",
        "record",
        "req",
        "resp",
        "route",
        "runtime",
        "scope",
        "sinks",
        "unread",
    )

    def __init__(
        self, runtime: Runtime, sinks: RecordSinks, app: ASGIApp, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self.runtime = runtime
        self.sinks = sinks
        self.app = app
        self.scope = _as_dict(scope)
        self._receive = receive
        self._send = send
        self.req = incoming_of(self.scope)
        self.record: RecordDraft | None = None
        self.route: RouteRuntime | None = None
        self.ex: Exchange | None = None
        #: The body when a stage needed it: given to the application in one message.
        self.body: bytes | None = None
        #: The server's message for an empty body was not received (no framing announced one).
        self.unread = False
        #: A refusal decided on the body while the application read it (over the limit).
        self.body_refusal: Refusal | None = None
        #: The response: the head the application sent, as the stages see it.
        self.resp: Response | None = None
        self.buffered: list[bytes] | None = None
        self.buffered_size = 0
        self.body_filter: BodyFilter | None = None
        self.decoder: Gunzip | None = None
        #: Nothing more the application sends goes out (a stage replaced its answer).
        self.dropping = False
        #: The head of a response went to the server.
        self.head_sent = False
        #: A body hook failed closed, or the body was refused, after the head went out.
        self.cut = False
        self.forwarded = 0.0
        #: The application's response header fields as it sent them, and decoded for the
        #: stages (same order): what the stages kept goes out as sent, not encoded again.
        self.app_raw_headers: list[Any] = []  # ASGI pairs: tuples or lists
        self.app_headers: HeaderList = []

    # -- the request side ----------------------------------------------------------------
    async def run(self) -> None:
        runtime = self.runtime
        runtime.enter()
        try:
            await self._run()
        finally:
            record = self.record
            if record is not None:
                if not self.head_sent and record.status == 0:
                    record.status = 499  # the client went away, or the application never answered
                finish_record(self.sinks, self.ex, record, self.req)
            runtime.leave()

    async def _run(self) -> None:
        scope = self.scope
        client = scope.get("client")
        peer = client[0] if client else "127.0.0.1"  # a Unix socket: a local client
        scheme: str = scope.get("scheme", "http")
        record, outcome = prelude(self.runtime, self.req, peer, scheme)
        self.record = record
        if scheme == "https":
            record.tls = "https"  # the server terminates TLS; its version is not in the scope
        if isinstance(outcome, Refusal):
            await self._refuse(outcome)
            return
        route, ex = outcome
        self.route, self.ex = route, ex
        chain = route.chain
        if chain.head_stages:
            answer = chain.head(ex)
            if isinstance(answer, Pending):
                answer = await chain.finish_head(ex, answer)
            if answer is not None:
                await self._answer(answer)
                return
        if chain.needs_request_body:
            body = await self._read_body(route)
            if body is None:
                return
            ex.request.body = body
            self.body = body
            over = over_body_json_limits(ex.request, route.bounds)
            if over is not None:
                await self._refuse(Refusal(413, over[1], over[0], ex.request_id))
                return
        if chain.request_stages:
            answer = chain.request(ex)
            if isinstance(answer, Pending):
                answer = await chain.finish_request(ex, answer)
            if answer is not None:
                await self._answer(answer)
                return
        await self._call_app(route, ex)

    async def _read_body(self, route: RouteRuntime) -> bytes | None:
        """The whole body, for a stage that needs it; ``None`` once refused (or the client left)."""
        req = self.req
        if req.version in _FRAMED and not req.chunked and not req.content_length:
            # HTTP/1.x without Content-Length or Transfer-Encoding (or with a length of 0) has
            # no body (RFC 9112, 6.3): nothing to wait for from the server. Its (empty) message
            # is still due, and is skipped when the application asks past the body.
            self.unread = True
            return b""
        parts: list[bytes] = []
        size = 0
        while True:
            message = _as_dict(await self._receive())
            if message["type"] != "http.request":
                return None  # http.disconnect: nobody to answer
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            refusal = self._over_body(route, size, bool(chunk))
            if refusal is not None:
                await self._refuse(refusal)
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        assert self.record is not None
        self.record.bytes_in = size
        return b"".join(parts)

    def _over_body(self, route: RouteRuntime, size: int, data: bool) -> Refusal | None:
        """A body the head did not announce, or larger than the route takes (HTTP/2 and some
        servers give no framing header): the same refusals as the prelude's."""
        request_id = self.record.request_id if self.record is not None else ""
        if data and self.req.method not in route.body_methods:
            detail = f"A {self.req.method} request on this route cannot have a body."
            return Refusal(400, detail, "http.body_not_allowed", request_id)
        if size > route.max_body_bytes:
            return Refusal(413, "The request body is too large for this route.", BODY_TOO_LARGE, request_id)
        return None

    async def _refuse(self, refusal: Refusal) -> None:
        """Answer a refusal decided before the application (as the gateway's ``_refuse``)."""
        record = self.record
        assert record is not None
        record.blocked_by = refusal.stage
        record.reason = refusal.reason
        if refusal.stage != "core":
            record.decisions = (Decision(refusal.stage, "block", refusal.reason, refusal.status),)
        resp = problem_response(
            refusal.status, refusal.detail, refusal.request_id, title=refusal.title, headers=refusal.extra
        )
        await self._send_whole(resp)

    async def _answer(self, answer: Response) -> None:
        """A stage answered (or refused) the request: the response hooks see the answer,
        which goes out in place of the application's."""
        ex, route = self.ex, self.route
        assert ex is not None and route is not None
        ex.response = answer
        await self._response_hooks(route, ex, True)
        final = ex.response
        assert final is not None
        await self._send_whole(final)

    # -- the application -------------------------------------------------------------------
    async def _call_app(self, route: RouteRuntime, ex: Exchange) -> None:
        record = self.record
        assert record is not None
        self.forwarded = time.perf_counter()
        scope = dict(self.scope)
        request = ex.request
        # What the stages left as it came is passed on as the server gave it (bytes, not
        # encoded again): the usual case, where no stage rewrote the path or a header.
        raw_path = request.path.encode("latin-1")
        if raw_path != scope.get("raw_path"):  # normalised by the prelude, or not given
            scope["path"] = unquote(request.path)
        scope["raw_path"] = raw_path
        scope["query_string"] = request.query.encode("latin-1")
        if request.headers == self.req.headers:
            headers = list(scope.get("headers", ()))
        else:
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers]
        headers.append((b"x-request-id", ex.request_id.encode("latin-1")))
        scope["headers"] = headers
        extensions = scope.get("extensions")
        if extensions and any(name in extensions for name in _BODY_ELSEWHERE):
            # A body sent as a file path or descriptor would pass by the body hooks and the
            # count of bytes sent: the application sends it as http.response.body instead.
            scope["extensions"] = {k: v for k, v in extensions.items() if k not in _BODY_ELSEWHERE}
        try:
            await self.app(scope, self._app_receive, self._app_send)
        except Exception:
            if self.head_sent or self.cut:
                raise  # the answer is on its way: the server breaks the connection
            if self.body_refusal is None:
                log.exception("the application failed on request %s", ex.request_id)
                record.upstream_error = "application"
                await self._send_whole(problem_response(500, "The application failed to answer.", ex.request_id))
                return
        if self.cut:
            raise Cut("the response was cut")  # even if the application swallowed it
        refusal = self.body_refusal
        if refusal is not None:
            await self._refuse(refusal)

    async def _app_receive(self) -> Message:
        body = self.body
        if body is not None:  # read whole for the stages: given at once, in one message
            self.body = None
            return {"type": "http.request", "body": body, "more_body": False}
        if self.body_refusal is not None:
            return dict(_DISCONNECT)
        message = await self._receive()
        if self.unread:  # the server's own message for the body Bastion knew was empty
            self.unread = False
            if message["type"] == "http.request":
                message = await self._receive()
        if message["type"] == "http.request" and self.route is not None and self.ex is not None:
            if self.ex.request.body is not None:
                return message  # after the whole body: nothing more to count
            chunk: bytes = message.get("body", b"")
            record = self.record
            assert record is not None
            record.bytes_in += len(chunk)
            refusal = self._over_body(self.route, record.bytes_in, bool(chunk))
            if refusal is not None:
                # The application is told the client left; the client gets the refusal, or
                # a cut connection if the application's answer is already on its way.
                self.body_refusal = refusal
                self.dropping = True
                if self.head_sent:
                    self._cut()
                return dict(_DISCONNECT)
        return message

    async def _app_send(self, message: Message) -> None:
        sent = _as_dict(message)
        kind: str = sent["type"]
        if self.dropping:
            return
        if kind == "http.response.start":
            await self._response_start(sent)
        elif kind == "http.response.body":
            await self._response_body(sent.get("body", b""), bool(sent.get("more_body", False)))
        else:
            await self._send(message)  # an extension's message (trailers, early hints)

    # -- the response side -----------------------------------------------------------------
    async def _response_start(self, message: dict[str, Any]) -> None:
        route, ex, record = self.route, self.ex, self.record
        assert route is not None and ex is not None and record is not None
        record.upstream_seconds = time.perf_counter() - self.forwarded
        status: int = message["status"]
        chain = route.chain
        if chain.passes_responses:  # no stage looks at responses: the application's, as sent
            raw = list(message.get("headers", ()))
            raw.append((b"x-request-id", ex.request_id.encode("latin-1")))
            record.status = status
            self.head_sent = True
            await self._send({"type": "http.response.start", "status": status, "headers": raw})
            return
        raw_headers: list[Any] = list(message.get("headers", ()))
        headers: HeaderList = [_decoded(field) for field in raw_headers]
        self.app_raw_headers = raw_headers
        self.app_headers = list(headers)
        resp = Response(status, headers, None)
        ex.response = resp
        self.resp = resp
        if chain.needs_response_body:
            self.buffered = []  # the stages see it whole: held until its last piece
            return
        if chain.sees_response_body:
            coding = coding_of(headers)
            if coding and coding != "gzip":  # the body hooks could not read it as it streams
                if not await self._over_limit(route, ex, f"response body in content coding {coding!r}"):
                    return
                await self._stream_head(route, ex, resp, inspected=False)
                return
        await self._response_hooks(route, ex, True)
        await self._stream_head(route, ex, resp, inspected=True)

    async def _response_body(self, chunk: bytes, more: bool) -> None:
        route, ex = self.route, self.ex
        assert route is not None and ex is not None
        if self.buffered is not None:
            self.buffered.append(chunk)
            self.buffered_size += len(chunk)
            if self.buffered_size > route.max_response_body_bytes:
                held, self.buffered = self.buffered, None
                if await self._over_limit(route, ex):
                    resp = self.resp
                    assert resp is not None
                    await self._stream_head(route, ex, resp, inspected=False)
                    if not self.dropping:
                        await self._response_body(b"".join(held), more)
                return
            if not more:
                body, self.buffered = b"".join(self.buffered), None
                await self._whole(route, ex, body)
            return
        if not self.head_sent:  # passes_responses is off, and the head is out by now
            return
        body_filter = self.body_filter
        if body_filter is None:
            await self._body_out(chunk, more)
            return
        out = self._filtered(body_filter, chunk, more)
        await self._body_out(out, more)

    def _filtered(self, body_filter: BodyFilter, chunk: bytes, more: bool) -> bytes:
        """A piece of the body through the body hooks (decoded first when gzip)."""
        pieces: list[bytes] = []
        try:
            decoded = self.decoder.pieces(chunk) if self.decoder is not None else (chunk,)
            for piece in decoded:
                out = body_filter.feed(piece, False)
                if out is None:
                    self._cut()
                pieces.append(out)
            if not more:
                if self.decoder is not None:
                    self.decoder.end()
                tail = body_filter.feed(b"", True)
                if tail is None:
                    self._cut()
                pieces.append(tail)
        except DecodeError as exc:
            log.warning("the application's gzip body cut: %s", exc)
            self._cut()
        return b"".join(pieces)

    def _cut(self) -> NoReturn:
        """Stop the response half-way: nothing more goes out, the connection is broken."""
        self.cut = True
        self.dropping = True
        raise Cut("the response body was cut")

    async def _over_limit(self, route: RouteRuntime, ex: Exchange, reason: str = _OVER_LIMIT) -> bool:
        """The body cannot be inspected: the route's named decision (as the proxy's): 'pass'
        sends it with only the hooks that do not need it, recorded so (``True``: go on);
        'block' answers 502 before the head goes out, dropping the application's answer."""
        if route.pass_over_limit:
            ex.decisions.append(Decision(_RESPONSE_BODY, "uninspected", reason))
            await self._response_hooks(route, ex, False)
            return True
        ex.decisions.append(Decision(_RESPONSE_BODY, "block", reason, 502))
        ex.blocked_by = _RESPONSE_BODY
        self.dropping = True
        detail = "The application's response is larger than this route may inspect."
        await self._answer(problem_response(502, detail, ex.request_id, title="The application failed to answer."))
        return False

    async def _whole(self, route: RouteRuntime, ex: Exchange, body: bytes) -> None:
        """The body is in, whole, for the stages that need it (decoded when gzip)."""
        resp = self.resp
        assert resp is not None
        resp.body = body
        coded: tuple[bytes, bytes, str] | None = None
        coding = coding_of(resp.headers)
        if coding and body:
            if coding != "gzip":
                if await self._over_limit(route, ex, f"response body in content coding {coding!r}"):
                    await self._send_whole(resp)
                return
            try:
                decoded = gunzip_whole(body, route.max_response_body_bytes)
            except DecodeError:
                self.dropping = True
                detail = "The application's compressed response body is invalid."
                await self._answer(problem_response(502, detail, ex.request_id))
                return
            if decoded is None:
                if await self._over_limit(route, ex, "response body over max_response_body_bytes once decoded"):
                    await self._send_whole(resp)
                return
            coded = (body, decoded, header_get(resp.headers, "content-encoding") or "gzip")
            resp.headers = without_coding(resp.headers)
            resp.body = decoded
        await self._response_hooks(route, ex, True)
        final = ex.response
        assert final is not None
        if final is resp:
            body_filter = route.chain.body_filter(ex)
            if body_filter is not None and resp.body is not None:
                out = body_filter.feed(resp.body, True)
                if out is None:
                    final = body_filter.refusal
                    assert final is not None
                else:
                    resp.body = out
            if coded is not None and resp.body == coded[1]:  # unchanged: the application's bytes
                resp.body = coded[0]
                resp.headers.append(("content-encoding", coded[2]))
        await self._send_whole(final)

    async def _response_hooks(self, route: RouteRuntime, ex: Exchange, inspected: bool) -> None:
        chain = route.chain
        if chain.response_stages:
            pending = chain.response(ex, 0, inspected)
            if pending is not None:
                await chain.finish_response(ex, pending, inspected)

    async def _stream_head(self, route: RouteRuntime, ex: Exchange, resp: Response, inspected: bool) -> None:
        """The head goes out; the body follows as the application sends it (through the
        body hooks, if any). A stage that replaced the response answers in its place."""
        final = ex.response
        assert final is not None
        if final is not resp:
            self.dropping = True
            await self._send_whole(final)
            return
        chain = route.chain
        body_filter = chain.body_filter(ex) if chain.body_stages else None
        if body_filter is not None:
            coding = coding_of(resp.headers)
            if coding == "gzip":
                self.decoder = Gunzip(bounded=True)
                resp.headers = without_coding(resp.headers)
            elif coding:
                body_filter = None  # passed uninspected (decided on the head)
            else:
                # The hooks may change the body's length: it goes without one (chunked).
                resp.headers = [(k, v) for k, v in resp.headers if k != "content-length"]
        self.body_filter = body_filter
        await self._send_head(resp.status, resp.headers, None)

    # -- out to the server -------------------------------------------------------------------
    async def _send_head(self, status: int, headers: HeaderList, length: int | None) -> None:
        record, ex = self.record, self.ex
        assert record is not None
        request_id = ex.request_id if ex is not None else record.request_id
        raw = self._encoded(headers, length is not None)
        if length is not None:
            raw.append((b"content-length", str(length).encode("ascii")))
        raw.append((b"x-request-id", request_id.encode("latin-1")))
        record.status = status
        self.head_sent = True
        await self._send({"type": "http.response.start", "status": status, "headers": raw})

    def _encoded(self, headers: HeaderList, own_length: bool) -> list[Any]:
        """``headers`` as the server takes them, without the framing Bastion sets. A field the
        stages kept from the application's response (its name and value the strings decoded
        from it, in the same order) is passed as the application sent it; only what they
        added is encoded."""
        sent, raw = self.app_headers, self.app_raw_headers
        known = len(sent)
        out: list[Any] = []
        at = 0
        for name, value in headers:
            if name == "transfer-encoding" or (own_length and name == "content-length"):
                continue
            # Known by its strings, not by the pair: compiled code holds a pair of strings
            # unboxed and boxes a new tuple where one is needed, so a pair a compiled stage
            # passed on is never the same object (and each such comparison built two tuples).
            found = at
            while found < known:
                kept = sent[found]
                if kept[0] is name and kept[1] is value:
                    break
                found += 1
            if found < known:
                out.append(raw[found])
                at = found + 1
            else:
                # Encoded each time: a table of the stages' strings cost more per lookup
                # (~137 instructions, callgrind) than the encode (~113).
                out.append((name.encode("latin-1"), value.encode("latin-1")))
        return out

    async def _body_out(self, chunk: bytes, more: bool) -> None:
        record = self.record
        assert record is not None
        record.bytes_out += len(chunk)
        await self._send({"type": "http.response.body", "body": chunk, "more_body": more})

    async def _send_whole(self, resp: Response) -> None:
        """A response known in full, head and body (none for HEAD, 204 and 304)."""
        if self.head_sent:
            return
        body = resp.body or b""
        if body_forbidden(resp.status, self.req.method):
            length = len(body) if self.req.method == "HEAD" else None
            await self._send_head(resp.status, resp.headers, length)
            await self._body_out(b"", False)
            return
        await self._send_head(resp.status, resp.headers, len(body))
        await self._body_out(body, False)


__all__ = ["Cut", "EmbeddedExchange", "incoming_of"]
