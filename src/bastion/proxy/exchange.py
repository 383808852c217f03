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

An exchange is a :class:`Flight`: the state and the loop that runs the steps are in
``flight.py``, the request side (prelude, body, request stages, forwarding) here, the
response side in ``respond.py``. The connection (``server.py``) owns the socket: it reads
bodies, writes responses and writes the access record; these modules decide what happens,
in which order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from bastion.errors import problem_response
from bastion.pipeline.chain import Pending
from bastion.proxy.http import IDEMPOTENT_METHODS
from bastion.proxy.http1 import Incoming, keeps_alive_after_refusal
from bastion.proxy.jsonscan import over_body_json_limits
from bastion.proxy.limits import BODY_TOO_LARGE
from bastion.proxy.metrics import METRICS
from bastion.proxy.prelude import Refusal, prelude, upstream_head
from bastion.proxy.respond import ResponseSteps
from bastion.proxy.upstream import TargetState
from bastion.proxy.upstream_connection import UpstreamConnection
from bastion.proxy.upstream_errors import UpstreamError
from bastion.types import Decision

if TYPE_CHECKING:
    from bastion.proxy.server import ClientConnection

log = logging.getLogger("bastion.proxy")


class BodyError(Exception):
    """The request body cannot be used (cut short, too large, too slow): its refusal."""

    def __init__(self, status: int, detail: str, reason: str = "http.body") -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        #: For the record and metrics (a limit's, see ``bastion.proxy.limits``).
        self.reason = reason


class Flight(ResponseSteps):
    """One request, from its parsed head to its access record."""

    __slots__ = ()

    def __init__(self, client: ClientConnection, req: Incoming) -> None:
        super().__init__(client, req)
        self.step = self._prelude

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
        self.refusal = Refusal(exc.status, exc.detail, exc.reason, self.ex.request_id)
        self.step = self._refuse

    def _request_stages(self) -> Awaitable[None] | None:
        chain = self.route.chain
        self.step = self._forward
        request = self.ex.request
        if request.body:  # most requests have none: no call at all
            # A stage will parse it: bounded on its bytes first, whatever the stage allows.
            over = over_body_json_limits(request, self.route.bounds)
            if over is not None:
                self.refusal = Refusal(413, over[1], over[0], self.ex.request_id)
                self.step = self._refuse
                return None
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
        self.deadline = time.monotonic() + pool.total_timeout
        conn.begin(
            self.ex.request.method,
            self.deadline,
            pool.read_timeout,
            self,
            max_body=self.route.bounds.max_upstream_response_bytes,
        )
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
        deadline = time.monotonic() + pool.total_timeout
        request = self.ex.request
        body = self.body
        max_body = self.route.bounds.max_upstream_response_bytes
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
                    conn.begin(request.method, deadline, pool.read_timeout, max_body=max_body)
                    conn.write(upstream_head(self.ex, target, len(body)) + body)
                    conn.end_request()
                else:
                    # The read timeout counts from the end of the upload, not its start.
                    conn.begin(request.method, deadline, pool.read_timeout, read_timer=False, max_body=max_body)
                    await self._stream_request_body(target, conn)
                    conn.end_request()
                    conn.start_read_timer()
                await conn.response_head()
            except UpstreamError as exc:
                target.active -= 1
                if not exc.limit:  # a response over the route's limit says nothing of the target's health
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
                raise BodyError(413, "The request body is too large for this route.", BODY_TOO_LARGE)
            if length is None:
                conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                conn.write(chunk)
            await conn.drain()
        if length is None:
            conn.write(b"0\r\n\r\n")
        self.ex.request.body = None

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
        if not exc.limit:
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


__all__ = ["BodyError", "Flight"]
