"""The response side of an exchange: the upstream's response through the response
stages and out to the client (whole, or streaming through the body hooks), and the
answers stages give in the upstream's place.

A :class:`Flight` (``exchange.py``) is a :class:`ResponseSteps`: these are its last steps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable

from bastion.errors import problem_response
from bastion.proxy.coding import DecodeError, Gunzip, coding_of, gunzip_whole, without_coding
from bastion.proxy.flight import FlightBase
from bastion.proxy.metrics import METRICS
from bastion.proxy.stream import end_stream, stream_head
from bastion.proxy.upstream_connection import UpstreamConnection
from bastion.proxy.upstream_errors import UpstreamError
from bastion.types import Decision, Response, header_get

log = logging.getLogger("bastion.proxy")

#: The name under which the proxy records its decisions on response bodies.
_RESPONSE_BODY = "http.response_body"
_OVER_LIMIT = "response body over max_response_body_bytes"

TITLES = {
    502: "The upstream service failed to answer.",
    503: "The upstream service is unavailable.",
    504: "The upstream service did not answer in time.",
}


class ResponseSteps(FlightBase):
    """The steps of an exchange from the upstream's response head (or a stage's answer)
    to the last byte sent."""

    __slots__ = ()

    # -- a stage's answer ------------------------------------------------------------------
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

    def _upstream_failed(self, exc: UpstreamError) -> None:
        """Answer the upstream's failure with a 502, 503 or 504 problem document."""
        ex, req, record = self.ex, self.req, self.record
        log.warning("upstream failure for %s (request %s): %s", self.route.service, ex.request_id, exc)
        record.upstream_error = exc.kind
        title = TITLES.get(exc.status, "Upstream failure.")
        if exc.limit:
            record.blocked_by, record.reason = "core", exc.limit
            detail = "The upstream response is larger than this route allows."
            ex.response = problem_response(exc.status, detail, ex.request_id, title=title)
        else:
            ex.response = problem_response(exc.status, title, ex.request_id)
        self._send_final(req.keep_alive and req.complete and req.error is None)

    def _body_failed(self, exc: UpstreamError) -> None:
        """The upstream failed in the middle of a body already streaming to the client:
        the head is out, so the only honest signal left is to cut the connection."""
        stream = self.stream
        assert stream is not None
        target = self.target
        record = self.record
        if target is not None and not exc.limit:
            target.record_failure(time.monotonic())
        METRICS.inc("bastion_upstream_errors", (self.route.service, exc.kind))
        log.warning("upstream body failed for %s (request %s): %s", self.route.service, self.ex.request_id, exc)
        record.upstream_error = exc.kind
        if exc.limit:  # the gateway cut it: recorded (and counted) as the limit's refusal
            record.blocked_by, record.reason = "core", exc.limit
        record.bytes_out = stream.sent
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
        if body is not None and chain.forwards_heads:
            # No stage looks at it, or only to add fields: its head goes as it came, the
            # fields after it (None: a field stage failed, left to the hooks to handle).
            fields = chain.fields(self.ex) if chain.field_stages else b""
            if fields is not None:
                self._release(conn)
                self.keep = self._keep_after_response()
                self.client._send_upstream(head, body, self.req, self.record, self.keep, self.ex.request_id, fields)
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
        try:
            body = await conn.read_body_upto(self.route.max_response_body_bytes)
        except UpstreamError as exc:
            self._failed_before_head(exc)
            return
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
        self._answered(problem_response(502, detail, ex.request_id, title=TITLES[502]))

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
        self.keep, self.stream = stream_head(
            self.client, self.req, resp, self.record, self.ex.request_id, keep, conn, body_filter, decoder
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
        try:
            await conn.read_body_into(self.route.max_body_bytes)
        except UpstreamError as exc:
            self._failed_before_head(exc)
            return
        self._release(conn)
        self._send_final(keep)

    def _failed_before_head(self, exc: UpstreamError) -> None:
        """The upstream failed while its body was read, before any answer went out: the
        connection is dropped and the client gets the failure's problem document."""
        target = self.target
        if target is not None and not exc.limit:
            target.record_failure(time.monotonic())
        METRICS.inc("bastion_upstream_errors", (self.route.service, exc.kind))
        self._drop_upstream()
        self._upstream_failed(exc)

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
        if not end_stream(self.client, stream, conn, self._pool(), self.record):
            self.keep = False  # a body hook failed closed on the last piece: the body is cut
        self.step = self._end


__all__ = ["TITLES", "ResponseSteps"]
