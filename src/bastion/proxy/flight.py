"""The state of one exchange and the running of its steps (the request side is
``exchange.py``, the response side ``respond.py``).

Each step is a method that does its part and names the next step. A step that can finish
at once returns ``None``; one that must wait (a body still arriving, a stage returning an
awaitable, a new upstream connection) returns the awaitable, and the steps go on in a task
from there (the trick :meth:`Chain.request` plays with :class:`Pending`). A step may also
park the exchange on its upstream connection's callbacks (:class:`UpstreamListener`),
which resume it. This module runs the steps, ends the exchange (its access record, the
runtime it started on) and keeps the upstream connection's bookkeeping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bastion.proxy.http1 import Incoming
from bastion.proxy.prelude import Refusal
from bastion.proxy.record import RecordDraft, finish_record
from bastion.proxy.runtime import RouteRuntime, Runtime
from bastion.proxy.upstream import TargetState, UpstreamPool
from bastion.proxy.upstream_connection import UpstreamConnection, UpstreamListener
from bastion.types import Exchange, Response

if TYPE_CHECKING:
    from bastion.proxy.server import ClientConnection
    from bastion.proxy.stream import Stream

log = logging.getLogger("bastion.proxy")

#: A step: does its part, sets the next one, and returns what it waits for (if anything).
Step = Callable[[], Awaitable[None] | None]


class FlightBase(UpstreamListener):
    """One request, from its parsed head to its access record: its state, and the loop
    that runs its steps (the steps themselves are in the subclasses)."""

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
        self.step: Step | None = None
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


__all__ = ["FlightBase", "Step"]
