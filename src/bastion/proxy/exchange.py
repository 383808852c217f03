"""One exchange, as one sequence of steps: prelude and routing, the request body, the
request stages, forwarding, the response stages, sending, the access record.

Each step is a method that does its part and names the next step. A step that can finish
at once returns ``None``; one that must wait (a body still arriving, a stage returning an
awaitable, a new upstream connection) returns the awaitable, and the steps go on in a task
from there (the trick :meth:`Chain.request` plays with :class:`Pending`). A step may also
park the exchange on its upstream connection's callbacks (:class:`UpstreamListener`),
which resume it. So an ordinary request (body received, stages answering at once, an idle
upstream connection in the pool) is answered with plain calls and no task, and every
request runs the same steps: a new phase is added once.

The connection (``server.py``) owns the socket: it reads bodies, writes responses and
writes the access record; this module decides what happens, in which order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bastion.errors import problem_response
from bastion.pipeline.chain import Pending
from bastion.proxy.coding import DecodeError, Gunzip, coding_of, gunzip_whole, without_coding
from bastion.proxy.http import IDEMPOTENT_METHODS
from bastion.proxy.http1 import Incoming, keeps_alive_after_refusal
from bastion.proxy.metrics import METRICS
from bastion.proxy.prelude import Refusal, prelude, upstream_head
from bastion.proxy.record import RecordDraft, finish_record
from bastion.proxy.runtime import RouteRuntime, Runtime
from bastion.proxy.upstream import TargetState, UpstreamPool
from bastion.proxy.upstream_connection import UpstreamConnection, UpstreamListener
from bastion.proxy.upstream_errors import UpstreamError
from bastion.types import Decision, Exchange, Response, header_get

if TYPE_CHECKING:
    from bastion.proxy.server import ClientConnection, Stream

log = logging.getLogger("bastion.proxy")

#: A step: does its part, sets the next one, and returns what it waits for (if anything).
Step = Callable[[], Awaitable[None] | None]

#: The name under which the proxy records its decisions on response bodies.
_RESPONSE_BODY = "http.response_body"
_OVER_LIMIT = "response body over max_response_body_bytes"

_TITLES = {
    502: "The upstream service failed to answer.",
    503: "The upstream service is unavailable.",
    504: "The upstream service did not answer in time.",
}


class BodyError(Exception):
    """The request body cannot be used (cut short, too large, too slow): its refusal."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Flight(UpstreamListener):
    """One request, from its parsed head to its access record."""

    __slots__ = (
        "body",
        "client",
        "coded",
        "deadline",
        "ex",
        "finished",
        "keep",
        "live",
        "parked",
        "record",
        "refusal",
        "req",
        "resp",
        "route",
        "routed",
        "runtime",
        "step",
        "stream",
        "target",
        "up",
    )

    #: Set by the prelude when the request was routed (``routed``).
    route: RouteRuntime
    ex: Exchange
    #: Set by the prelude, the first step.
    record: RecordDraft

    def __init__(self, client: ClientConnection, req: Incoming) -> None:
        self.client = client
        self.req = req
        self.routed = False
        #: The runtime this exchange started on, counted in until the exchange ends.
        self.runtime: Runtime | None = None
        self.refusal: Refusal | None = None
        #: The request body, when known in full (``None``: it streams to the upstream).
        self.body: bytes | None = None
        self.resp: Response | None = None
        #: A gzip body decoded for the stages: (as it came, decoded, its Content-Encoding).
        self.coded: tuple[bytes, bytes, str] | None = None
        #: The upstream target and connection in use; ``target.active`` counts us meanwhile.
        self.target: TargetState | None = None
        self.up: UpstreamConnection | None = None
        self.deadline = 0.0
        self.keep = False
        #: Set once the response head is sent and the body streams through.
        self.stream: Stream | None = None
        self.step: Step | None = self._prelude
        #: Waiting on the upstream connection's callbacks (no task).
        self.parked = False
        #: ``start`` returned: the end of the exchange is reported to the connection.
        self.live = False
        self.finished = False

    # -- running the steps ---------------------------------------------------------------
    def start(self) -> bool | None:
        """Run the steps as far as they go without waiting. Returns whether the connection
        stays open when the exchange ended here, or ``None`` when it goes on later."""
        self._run()
        if self.finished:
            return self.keep
        self.live = True
        return None

    def _run(self) -> None:
        """Run steps while they finish at once; the first that waits goes on in a task."""
        while True:
            step = self.step
            if step is None:
                return  # ended, or parked on the upstream's callbacks
            self.step = None
            waiting = step()
            if waiting is not None:
                up = self.up
                if up is not None and up.listener is self:
                    up.detach()  # the task follows the upstream with futures from now on
                client = self.client
                client.task = client.loop.create_task(self._continue(waiting))
                return

    async def _continue(self, waiting: Awaitable[None]) -> None:
        try:
            await waiting
            while True:
                step = self.step
                if step is None:
                    return
                self.step = None
                waiting_next = step()
                if waiting_next is not None:
                    await waiting_next
        except asyncio.CancelledError:
            self._cut()  # the client went away, or the drain ended: no more steps
        except Exception:  # a bug in the proxy: never take the worker down with it
            log.exception("request handler failed")
            self._drop_upstream()
            self._record()
            self.client.abort()

    def _end(self) -> None:
        """The last step: write the access record, let the connection go on."""
        if self.finished:
            return
        self._record()
        if self.live:
            self.client._complete(self.keep)

    def _record(self) -> None:
        if not self.finished:
            self.finished = True
            finish_record(self.client.server.sinks, self.ex if self.routed else None, self.record, self.req)
            runtime = self.runtime
            if runtime is not None:
                self.runtime = None
                runtime.leave()

    def abandon(self) -> None:
        """The client went away (or the drain ended) while the exchange was parked on its
        upstream's callbacks: drop the upstream connection, log the record (499 unless an
        answer went out). An exchange running in a task is stopped by cancelling it."""
        if not self.parked:
            return
        self.parked = False
        self._cut()

    def _cut(self) -> None:
        if self.finished:  # its record is written (and may be waiting in the log's batch)
            self._drop_upstream()
            return
        record = self.record
        record.status = record.status or 499
        if self.stream is not None:
            record.bytes_out = self.stream.sent
        self._drop_upstream()
        self._record()

    def _drop_upstream(self) -> None:
        """Never pool a connection whose exchange was interrupted."""
        up = self.up
        if up is not None:
            self.up = None
            up.detach()
            up.abort()
            self._uncount()

    def _uncount(self) -> None:
        target = self.target
        if target is not None:
            self.target = None
            target.active -= 1

    # -- the request side ------------------------------------------------------------------
    def _prelude(self) -> None:
        client = self.client
        runtime = self.runtime = client.server.runtime
        runtime.enter()  # its stages and pools stay open until this exchange ends
        record, outcome = prelude(runtime, self.req, client.peer_ip, client.scheme)
        record.tls = client.tls_version
        self.record = record
        client.record = record  # the request being answered (a drain timeout must know it)
        if isinstance(outcome, Refusal):
            self.refusal = outcome
            self.step = self._refuse
            return
        self.route, self.ex = outcome
        self.ex.client_cert = client.client_cert
        self.routed = True
        self.step = self._head_stages if self.route.chain.head_stages else self._read_body

    def _refuse(self) -> Awaitable[None] | None:
        """Answer a refusal at once; then read and drop what is left of a small body."""
        refusal = self.refusal
        assert refusal is not None
        req = self.req
        record = self.record
        record.blocked_by = refusal.stage
        record.reason = refusal.reason
        if refusal.stage != "core":  # a stage's decision, recorded (and counted) as the chain's are
            record.decisions = (Decision(refusal.stage, "block", refusal.reason, refusal.status),)
        resp = problem_response(
            refusal.status, refusal.detail, refusal.request_id, title=refusal.title, headers=refusal.extra
        )
        # The connection stays only for a well-formed request whose (small) remaining body
        # can be read and dropped after the answer.
        self.keep = keeps_alive_after_refusal(req, self.client.server.draining)
        self.client._send_whole(resp, req, record, self.keep, refusal.request_id)
        self.step = self._end
        if self.keep and not (req.complete and req.error is None):
            return self._discard_body()
        return None

    async def _discard_body(self) -> None:
        if not await self.client._discard_body(self.req):
            self.client._close()
            self.keep = False

    def _head_stages(self) -> Awaitable[None] | None:
        """Stages that need only the head decide before any of the body is read (and
        before ``100 Continue``): a client they refuse uploads nothing."""
        self.step = self._read_body
        answer = self.route.chain.head(self.ex)
        if isinstance(answer, Pending):
            return self._finish_head_stages(answer)
        if answer is not None:
            self._answered(answer)
        return None

    async def _finish_head_stages(self, pending: Pending) -> None:
        answer = await self.route.chain.finish_head(self.ex, pending)
        if answer is not None:
            self._answered(answer)

    def _read_body(self) -> Awaitable[None] | None:
        """A body received in full goes in one write with the head (and can be replayed on
        a retry); one a stage needs is read first; any other streams to the upstream."""
        req, chain = self.req, self.route.chain
        self.step = self._request_stages
        if req.complete and req.error is None and not req.expect_continue:
            body = req.take_buffered()  # often none; the prelude checked its size
            if chain.needs_request_body:
                self.ex.request.body = body
            self.body = body
        elif chain.needs_request_body or req.complete:
            return self._read_whole_body()
        self.record.bytes_in = req.consumed
        return None

    async def _read_whole_body(self) -> None:
        req = self.req
        try:
            body = await self.client._read_body(req, self.route.max_body_bytes)
        except BodyError as exc:
            self._refuse_body(exc)
            return
        self.ex.request.body = body if self.route.chain.needs_request_body else None
        self.body = body
        self.record.bytes_in = req.consumed

    def _refuse_body(self, exc: BodyError) -> None:
        self.refusal = Refusal(exc.status, exc.detail, "http.body", self.ex.request_id)
        self.step = self._refuse

    def _request_stages(self) -> Awaitable[None] | None:
        chain = self.route.chain
        self.step = self._forward
        if chain.request_stages:
            answer = chain.request(self.ex)
            if isinstance(answer, Pending):
                return self._finish_request_stages(answer)
            if answer is not None:
                self._answered(answer)
        return None

    async def _finish_request_stages(self, pending: Pending) -> None:
        answer = await self.route.chain.finish_request(self.ex, pending)
        if answer is not None:
            self._answered(answer)

    def _answered(self, answer: Response) -> None:
        """A stage answered (or refused) the request: it is not forwarded."""
        self.ex.response = answer
        self.step = self._answer_stages

    def _answer_stages(self) -> Awaitable[None] | None:
        self.step = self._send_answer
        return self._response_hooks()

    def _send_answer(self) -> Awaitable[None] | None:
        req = self.req
        if req.keep_alive and not (req.complete and req.error is None):
            return self._discard_then_send_answer()
        self._send_final(req.keep_alive)
        return None

    async def _discard_then_send_answer(self) -> None:
        self._send_final(await self.client._discard_body(self.req))

    def _send_final(self, keep: bool) -> None:
        """Send ``ex.response`` whole, and end."""
        response = self.ex.response
        assert response is not None
        self.keep = keep
        self.client._send_whole(response, self.req, self.record, keep, self.ex.request_id)
        self.step = self._end

    # -- forwarding ------------------------------------------------------------------------
    def _forward(self) -> Awaitable[None] | None:
        """On an idle pooled connection with the body known, with plain calls (the upstream's
        callbacks go on); otherwise in a task (a new connection, a streamed upload)."""
        pool = self.route.pool
        if pool is None:  # a built-in route whose stage did not answer: never forwarded
            self._answered(problem_response(500, "The gateway's endpoint gave no answer.", self.ex.request_id))
            return None
        self.record.forwarded = time.perf_counter()  # the upstream latency runs from here
        body = self.body
        if body is None:
            return self._forward_waiting(None)
        try:
            target = pool.choose()
        except UpstreamError as exc:
            self._upstream_failed(exc)
            return None
        conn = pool.pooled(target)
        if conn is None:
            return self._forward_waiting(target)
        target.active += 1
        self.target, self.up = target, conn
        cfg = pool.config
        self.deadline = time.monotonic() + cfg.timeouts.total
        conn.begin(self.ex.request.method, self.deadline, cfg.timeouts.read, self)
        self.parked = True
        conn.write(upstream_head(self.ex, target, len(body)) + body)
        conn.end_request()
        return None

    async def _forward_waiting(
        self, first: TargetState | None, exclude: TargetState | None = None, attempts_used: int = 0
    ) -> None:
        """Forward, opening connections and retrying as the upstream's config allows, up
        to the response head; ``first`` is the target already chosen, if any."""
        pool = self._pool()
        cfg = pool.config
        deadline = time.monotonic() + cfg.timeouts.total
        request = self.ex.request
        body = self.body
        attempts = 1 + cfg.retries if (request.method in IDEMPOTENT_METHODS and body is not None) else 1
        target: TargetState | None = exclude
        for attempt in range(attempts_used, attempts):
            try:
                if first is not None:
                    target, first = first, None
                else:
                    target = pool.choose(exclude=target)
            except UpstreamError as exc:
                self._upstream_failed(exc)
                return
            target.active += 1
            conn: UpstreamConnection | None = None
            try:
                # A retry never takes a pooled connection: the one that failed was dropped by
                # the upstream (the keep-alive race), and its idle siblings may be just as stale.
                conn = pool.pooled(target) if attempt == 0 else None
                if conn is None:
                    conn = await pool.acquire(target, deadline, fresh=attempt > 0)
                if body is not None:
                    conn.begin(request.method, deadline, cfg.timeouts.read)
                    conn.write(upstream_head(self.ex, target, len(body)) + body)
                    conn.end_request()
                else:
                    # The read timeout counts from the end of the upload, not its start.
                    conn.begin(request.method, deadline, cfg.timeouts.read, read_timer=False)
                    await self._stream_request_body(target, conn)
                    conn.end_request()
                    conn.start_read_timer()
                await conn.response_head()
            except UpstreamError as exc:
                target.active -= 1
                target.record_failure(time.monotonic())
                if conn is not None:
                    conn.abort()
                METRICS.inc("bastion_upstream_errors", (self.route.service, exc.kind))
                if exc.retryable and attempt + 1 < attempts and time.monotonic() < deadline:
                    continue
                self._upstream_failed(exc)
                return
            except BodyError as refused:  # not ``exc``: mypyc gives a name one type per function
                target.active -= 1
                if conn is not None:
                    conn.abort()
                self._refuse_body(refused)
                return
            except BaseException:
                target.active -= 1
                if conn is not None:
                    conn.abort()
                raise
            self.target, self.up = target, conn
            self.step = self._response
            return

    async def _stream_request_body(self, target: TargetState, conn: UpstreamConnection) -> None:
        """Send the head, then the body as it arrives (chunked unless the length is known)."""
        req, client, limit = self.req, self.client, self.route.max_body_bytes
        length = req.content_length
        conn.write(upstream_head(self.ex, target, length))
        while True:
            chunk = await client._next_chunk(req)
            if chunk is None:
                break
            if req.consumed > limit:
                raise BodyError(413, "The request body is too large for this route.")
            if length is None:
                conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                conn.write(chunk)
            await conn.drain()
        if length is None:
            conn.write(b"0\r\n\r\n")
        self.ex.request.body = None

    def _upstream_failed(self, exc: UpstreamError) -> None:
        """Answer the upstream's failure with a 502, 503 or 504 problem document."""
        ex, req = self.ex, self.req
        log.warning("upstream failure for %s (request %s): %s", self.route.service, ex.request_id, exc)
        self.record.upstream_error = exc.kind
        ex.response = problem_response(exc.status, _TITLES.get(exc.status, "Upstream failure."), ex.request_id)
        self._send_final(req.keep_alive and req.complete and req.error is None)

    # -- upstream callbacks (a parked exchange) -----------------------------------------------
    def upstream_head(self, conn: UpstreamConnection) -> None:
        self.parked = False
        self.step = self._response
        self._run()

    def upstream_done(self, conn: UpstreamConnection) -> None:
        if self.stream is not None:
            self.parked = False
            self.step = self._stream_done
            self._run()

    def upstream_failed(self, conn: UpstreamConnection, exc: UpstreamError) -> None:
        self.parked = False
        target = self.target
        assert target is not None
        if self.stream is not None:
            self._body_failed(exc)
            return
        self._uncount()
        target.record_failure(time.monotonic())
        self.up = None
        conn.abort()
        METRICS.inc("bastion_upstream_errors", (self.route.service, exc.kind))
        cfg = self._pool().config
        if (
            exc.retryable
            and cfg.retries
            and self.ex.request.method in IDEMPOTENT_METHODS
            and time.monotonic() < self.deadline
        ):
            # Try again, another target if there is one.
            self.step = None
            self.client.task = self.client.loop.create_task(self._continue(self._forward_waiting(None, target, 1)))
            return
        self._upstream_failed(exc)
        self._run()

    def _body_failed(self, exc: UpstreamError) -> None:
        """The upstream failed in the middle of a body already streaming to the client:
        the head is out, so the only honest signal left is to cut the connection."""
        stream = self.stream
        assert stream is not None
        target = self.target
        if target is not None:
            target.record_failure(time.monotonic())
        METRICS.inc("bastion_upstream_errors", (self.route.service, exc.kind))
        log.warning("upstream body failed for %s (request %s): %s", self.route.service, self.ex.request_id, exc)
        self.record.upstream_error = exc.kind
        self.record.bytes_out = stream.sent
        self._drop_upstream()
        self.keep = False
        self._record()
        self.client.abort()

    # -- the response side -----------------------------------------------------------------
    def _response(self) -> Awaitable[None] | None:
        """The upstream's response head is in: pass the response through as bytes when no
        stage looks at it and it is complete, else build it for the stages."""
        conn, target = self.up, self.target
        assert conn is not None and target is not None
        head = conn.head
        assert head is not None
        record = self.record
        record.upstream = target.url
        record.upstream_seconds = time.perf_counter() - record.forwarded
        if head.status in (502, 503, 504):
            target.record_failure(time.monotonic())
        else:
            target.record_success()
        chain = self.route.chain
        body = conn.take_complete_body()
        if body is not None and chain.passes_responses:
            self._release(conn)
            self.keep = self._keep_after_response()
            self.client._send_upstream(head, body, self.req, self.record, self.keep, self.ex.request_id)
            self.step = self._end
            return None
        resp = Response(head.status, head.headers, body)  # hop-by-hop already dropped
        self.ex.response = resp
        self.resp = resp
        self.step = self._response_stages
        if chain.sees_response_body:
            if body is None:
                if chain.needs_response_body:
                    return self._read_response_body(conn)
                coding = coding_of(resp.headers)
                if coding and coding != "gzip":  # the body hooks could not read it as it streams
                    self._over_limit(conn, f"response body in content coding {coding!r}")
            elif chain.needs_response_body and len(body) > self.route.max_response_body_bytes:
                self._over_limit(conn)
            else:
                self._open_whole(conn, resp)
        return None

    async def _read_response_body(self, conn: UpstreamConnection) -> None:
        """Buffer the body for the stages that need it whole, up to the route's limit."""
        resp = self.resp
        assert resp is not None
        body = await conn.read_body_upto(self.route.max_response_body_bytes)
        if body is None:
            self._over_limit(conn)
        else:
            resp.body = body
            self._open_whole(conn, resp)

    def _open_whole(self, conn: UpstreamConnection, resp: Response) -> None:
        """Decode a gzip body known in full for the stages that see it, held to the route's
        limit once decoded (a decompression bomb is a body over the limit). The stages see
        the plain body without Content-Encoding; :meth:`_send_response` sends the upstream's
        own bytes again when they left it as it was."""
        body = resp.body
        coding = coding_of(resp.headers)
        if not coding or not body:
            return
        if coding != "gzip":
            self._over_limit(conn, f"response body in content coding {coding!r}")
            return
        try:
            decoded = gunzip_whole(body, self.route.max_response_body_bytes)
        except DecodeError as exc:
            self._bad_coding(exc)
            return
        if decoded is None:
            self._over_limit(conn, "response body over max_response_body_bytes once decoded")
            return
        self.coded = (body, decoded, header_get(resp.headers, "content-encoding") or "gzip")
        resp.headers = without_coding(resp.headers)
        resp.body = decoded

    def _bad_coding(self, exc: DecodeError) -> None:
        """The upstream's compressed body cannot be decoded: the upstream failed (502)."""
        ex = self.ex
        log.warning("upstream body of %s (request %s) not decoded: %s", self.route.service, ex.request_id, exc)
        self.record.upstream_error = "coding"
        self._drop_upstream()
        self._answered(problem_response(502, "The upstream's compressed response body is invalid.", ex.request_id))

    def _over_limit(self, conn: UpstreamConnection, reason: str = _OVER_LIMIT) -> None:
        """The body cannot be inspected: larger than the route may buffer, or in a content
        coding the proxy does not decode. The route's named decision, taken before the
        response head is sent (so never a cut connection): 'pass' forwards it with only the
        hooks that do not need the body, recorded as uninspected; 'block' answers 502 and does
        not read the rest of the body."""
        ex = self.ex
        if self.route.pass_over_limit:
            ex.decisions.append(Decision(_RESPONSE_BODY, "uninspected", reason))
            self.step = self._uninspected_stages
            return
        ex.decisions.append(Decision(_RESPONSE_BODY, "block", reason, 502))
        ex.blocked_by = _RESPONSE_BODY
        if conn.reusable():  # the body was in already: the connection is clean
            self._release(conn)
        else:
            self._drop_upstream()
        detail = "The upstream response is larger than this route may inspect."
        self._answered(problem_response(502, detail, ex.request_id, title=_TITLES[502]))

    def _response_stages(self) -> Awaitable[None] | None:
        self.step = self._send_response
        return self._response_hooks()

    def _uninspected_stages(self) -> Awaitable[None] | None:
        self.step = self._send_response
        return self._response_hooks(inspected=False)

    def _response_hooks(self, inspected: bool = True) -> Awaitable[None] | None:
        """Run the response hooks on ``ex.response`` (in reverse order; a block replaces it)."""
        chain = self.route.chain
        if chain.response_stages:
            pending = chain.response(self.ex, 0, inspected)
            if pending is not None:
                return chain.finish_response(self.ex, pending, inspected)
        return None

    def _send_response(self) -> Awaitable[None] | None:
        conn, resp, final = self.up, self.resp, self.ex.response
        assert conn is not None and resp is not None and final is not None
        keep = self._keep_after_response()
        if final is not resp or resp.body is not None:
            # The body is known in full (buffered, or replaced by a stage).
            if final is not resp and not conn.reusable():
                self._drop_upstream()  # we will not read the rest of the upstream body
            elif resp.body is None:
                return self._read_rest_then_send(conn, keep)
            else:
                self._release(conn)
            if final is resp and self.route.chain.sees_response_body:
                self._whole_body_out(resp)
            self._send_final(keep)
            return None
        # Stream the upstream body through (through the body hooks, if any).
        chain = self.route.chain
        body_filter = chain.body_filter(self.ex) if chain.body_stages else None
        decoder: Gunzip | None = None
        if body_filter is not None:
            coding = coding_of(resp.headers)
            if coding == "gzip":
                # Decoded for the hooks and sent plain: re-compressing costs CPU on every byte.
                decoder = Gunzip(bounded=True)
                resp.headers = without_coding(resp.headers)
            elif coding:
                body_filter = None  # passed uninspected (decided in _response)
            else:
                # The hooks may change the body's length: it goes re-framed (chunked).
                resp.headers = [(k, v) for k, v in resp.headers if k != "content-length"]
        self.keep, self.stream = self.client._stream_head(
            self.req, resp, self.record, self.ex.request_id, keep, conn, body_filter, decoder
        )
        if self.stream is None:  # the client is gone already
            self._drop_upstream()
            self.keep = False
            self.step = self._end
        elif conn.complete:
            self.step = self._stream_done
        elif conn.listener is self:
            self.parked = True  # upstream_done goes on
        else:
            return self._wait_stream(conn)
        return None

    def _whole_body_out(self, resp: Response) -> None:
        """The upstream's body known in full, on its way out: run the body hooks over it as
        its one and last piece (a hook failing closed turns the answer into its 500, nothing
        being sent yet); a decoded body the stages left as it was goes as the upstream's own
        compressed bytes, a changed one plain (without Content-Encoding)."""
        body_filter = self.route.chain.body_filter(self.ex)
        if body_filter is not None and resp.body is not None and not coding_of(resp.headers):
            out = body_filter.feed(resp.body, True)
            if out is None:
                self.ex.response = body_filter.refusal
                return
            resp.body = out
        coded = self.coded
        if coded is not None and resp.body == coded[1]:
            resp.body = coded[0]
            resp.headers.append(("content-encoding", coded[2]))

    async def _read_rest_then_send(self, conn: UpstreamConnection, keep: bool) -> None:
        await conn.read_body_into(self.route.max_body_bytes)
        self._release(conn)
        self._send_final(keep)

    async def _wait_stream(self, conn: UpstreamConnection) -> None:
        try:
            await conn.wait_done()
        except UpstreamError as exc:
            self._body_failed(exc)
            return
        self.step = self._stream_done

    def _stream_done(self) -> None:
        """The upstream body ended: end the client's body, give the connection back."""
        conn, stream = self.up, self.stream
        assert conn is not None and stream is not None
        self.up = None
        self._uncount()
        if not self.client._end_stream(stream, conn, self._pool(), self.record):
            self.keep = False  # a body hook failed closed on the last piece: the body is cut
        self.step = self._end

    def _release(self, conn: UpstreamConnection) -> None:
        self.up = None
        self._uncount()
        self._pool().release(conn)

    def _pool(self) -> UpstreamPool:
        """The route's upstream pool, once forwarding (built-in routes never reach this)."""
        pool = self.route.pool
        if pool is None:
            raise RuntimeError(f"route {self.route.id} has no upstream")
        return pool

    def _keep_after_response(self) -> bool:
        req = self.req
        return req.keep_alive and not self.client.server.draining and req.complete and req.error is None


__all__ = ["BodyError", "Flight"]
