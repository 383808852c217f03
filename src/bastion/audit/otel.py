"""OpenTelemetry traces of the audit log: one span per request, exported over OTLP/HTTP
with the protocol's JSON encoding (``POST <endpoint>``, ``Content-Type: application/json``)
without the OpenTelemetry SDK.

A record sink. On the request path it only appends the read-only record to a bounded
queue (a full queue drops the span and counts it in ``bastion_otel_dropped_total``). A task
of the worker's loop turns the queue into spans every ``flush_interval`` (or as soon as a
batch is full) and posts them with the worker's shared HTTP client; an export the collector
did not take is not sent again (tracing is best effort; the audit log's store is where
nothing is lost) and its spans are counted in ``bastion_otel_export_errors_total``.

A span is the gateway's ``SERVER`` span of the request: its IDs from the ``tracing`` stage
(the client's trace continued, or a trace whose ID is the request ID), a start and an end
from the record, the HTTP semantic conventions' attributes (``http.request.method``,
``url.path``, ``http.route``, ``http.response.status_code``...) and Bastion's own
(``bastion.request_id``, ``bastion.decision``, ``bastion.stage``, ``bastion.rule``...). A
request no stage ran for (a core refusal such as ``404``) still gets a span, with a trace
of its own. The URL's query is never exported: it may hold credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from bastion import __version__
from bastion.audit.entry import audit_row
from bastion.config.audit import OtelSettings
from bastion.proxy.metrics import METRICS, Metrics
from bastion.services import WorkerIdentity
from bastion.types import ExchangeRecord

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("bastion.audit.otel")

#: OTLP's SpanKind SERVER, and its status codes UNSET and ERROR.
KIND_SERVER = 2
STATUS_UNSET, STATUS_ERROR = 0, 2
#: A failing collector is logged at most once per this many seconds.
ERROR_LOG_INTERVAL = 60.0


def _value(value: object) -> dict[str, object]:
    """An OTLP ``AnyValue``: 64-bit integers are strings in the JSON encoding."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def attributes(pairs: Iterable[tuple[str, object]]) -> list[dict[str, object]]:
    """OTLP ``KeyValue`` attributes of the pairs whose value is not ``None``."""
    return [{"key": key, "value": _value(value)} for key, value in pairs if value is not None]


def _nanos(seconds: float) -> str:
    return str(int(seconds * 1_000_000_000))


class OtelExporter:
    """The ``otel`` record sink of one worker: :meth:`start` starts its export task on the
    running loop; :meth:`close` exports what is queued and stops."""

    name = "otel"

    def __init__(
        self,
        settings: OtelSettings,
        identity: WorkerIdentity,
        http: httpx.AsyncClient,
        routes: Mapping[tuple[str, str], str],
        metrics: Metrics = METRICS,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.http = http
        #: (service, route id) -> the route's path template (``http.route``).
        self._routes = routes
        self._metrics = metrics
        self._queue: deque[ExchangeRecord] = deque()
        self._capacity = settings.queue_size
        self._headers = {**settings.headers, "Content-Type": "application/json", "User-Agent": "Bastion-OTLP"}
        self._resource = {
            "attributes": attributes((
                ("service.name", settings.service_name),
                ("service.version", __version__),
                ("service.instance.id", f"{identity.instance}-{identity.index}"),
                ("telemetry.sdk.name", "bastion"),
                ("telemetry.sdk.language", "python"),
            ))
        }
        self._scope = {"name": "bastion.gateway", "version": __version__}
        self._random = random.Random()
        self._stopping = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._logged_at = -ERROR_LOG_INTERVAL

    # -- the request path -------------------------------------------------------------------
    def __call__(self, record: ExchangeRecord) -> None:
        queue = self._queue
        if len(queue) < self._capacity:
            queue.append(record)
            if len(queue) == self.settings.batch_size:
                self._full.set()
        else:
            self._metrics.inc("bastion_otel_dropped", ())

    # -- the worker's start and stop ----------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="bastion-otel")

    async def close(self) -> None:
        """Export every queued span, then stop."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.settings.flush_interval)
            self._full.clear()
            await self.flush()
        await self.flush()

    async def flush(self) -> None:
        """Export the queue, a batch at a time (tests call it to skip the wait)."""
        queue = self._queue
        size = self.settings.batch_size
        while queue:
            batch = [queue.popleft() for _ in range(min(size, len(queue)))]
            await self._export([self.span(record) for record in batch])

    async def _export(self, spans: list[dict[str, Any]]) -> None:
        body = orjson.dumps({
            "resourceSpans": [{"resource": self._resource, "scopeSpans": [{"scope": self._scope, "spans": spans}]}]
        })
        try:
            response = await self.http.post(self.settings.endpoint, content=body, headers=self._headers)
        except Exception as exc:  # httpx's transport errors: the batch is lost, counted
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code < 300:
                return
            problem = f"HTTP {response.status_code}"
        self._metrics.inc("bastion_otel_export_errors", (), float(len(spans)))
        now = time.monotonic()
        if now - self._logged_at >= ERROR_LOG_INTERVAL:
            self._logged_at = now
            log.error("the OpenTelemetry collector %s did not take %d span(s): %s",
                      self.settings.endpoint, len(spans), problem)

    # -- a record as a span -----------------------------------------------------------------
    def span(self, record: ExchangeRecord) -> dict[str, Any]:
        """The OTLP span of ``record``."""
        context = record.facts.get("tracing")
        parent: str | None = None
        if isinstance(context, dict):
            trace_id, span_id, parent = str(context["trace_id"]), str(context["span_id"]), context.get("parent_id")
        else:  # no stage ran (a core refusal): a trace of its own
            trace_id = f"{self._random.getrandbits(128) | 1:032x}"
            span_id = f"{self._random.getrandbits(64) | 1:016x}"
        row = audit_row(record, record.request_id, self.identity.instance, self.identity.index)
        template = self._routes.get((record.service or "", record.route or ""))
        method = record.method
        span: dict[str, Any] = {
            "traceId": trace_id,
            "spanId": span_id,
            "name": f"{method} {template}" if template else method,
            "kind": KIND_SERVER,
            "startTimeUnixNano": _nanos(record.ts),
            "endTimeUnixNano": _nanos(record.ts + record.seconds),
            "attributes": attributes((
                ("http.request.method", method),
                ("url.path", record.path),
                ("http.route", template),
                ("http.response.status_code", record.status),
                ("server.address", record.host or None),
                ("client.address", record.client),
                ("user_agent.original", row["user_agent"]),
                ("tls.protocol.version", record.tls),
                ("http.request.body.size", record.bytes_in),
                ("http.response.body.size", record.bytes_out),
                ("bastion.request_id", record.request_id),
                ("bastion.service", record.service),
                ("bastion.route", record.route),
                ("bastion.decision", row["decision"]),
                ("bastion.stage", row["stage"]),
                ("bastion.rule", row["rule"]),
                ("bastion.category", row["category"]),
                ("bastion.reason", row["reason"]),
                ("bastion.consumer", record.consumer),
                ("bastion.credential", record.credential),
                ("bastion.upstream", record.upstream),
                ("bastion.upstream_error", record.upstream_error),
                ("bastion.upstream_ms", row["upstream_ms"]),
            )),
            # A server span is an error for 5xx only (HTTP semantic conventions): a 4xx is the client's.
            "status": {"code": STATUS_ERROR} if record.status >= 500 else {"code": STATUS_UNSET},
        }
        if isinstance(parent, str):
            span["parentSpanId"] = parent
        return span


def route_templates(routes: Iterable[Any]) -> dict[tuple[str, str], str]:
    """(service, route id) -> ``http.route``: the route's path, ``/*`` after a prefix route's."""
    return {
        (route.service, route.id): (route.path.rstrip("/") + "/*" if route.prefix else route.path)
        for route in routes
    }


__all__ = ["OtelExporter", "attributes", "route_templates"]
