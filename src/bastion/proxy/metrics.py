"""The data plane's metrics: plain counters in memory, a snapshot file per second.

A request pays for a few dictionary increments, nothing more: workers never touch
Prometheus objects. Each worker writes ``worker-<pid>.json`` into the metrics folder the
supervisor gives it (``BASTION_METRICS_DIR``); the admin API sums the snapshots
(see ``bastion.control.metrics``).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import orjson

from bastion.proxy.limits import LIMIT_REASONS
from bastion.types import ExchangeRecord

SNAPSHOT_INTERVAL = 1.0

#: A tuple of any length, not ``tuple[float, float, ...]`` as inferred: mypyc keeps a
#: fixed-length tuple unboxed and boxed all 14 floats into a new tuple on every
#: ``bisect`` call (callgrind: ~2,000 instructions per request).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)


@dataclass(frozen=True)
class MetricDef:
    name: str
    help: str
    labels: tuple[str, ...]
    kind: str  # "counter", "gauge" or "histogram"


DEFINITIONS: tuple[MetricDef, ...] = (
    MetricDef(
        "bastion_requests",
        "Requests answered, by service, route and status code.",
        ("service", "route", "code"),
        "counter",
    ),
    MetricDef(
        "bastion_request_duration_seconds",
        "Time from request head to the end of the response.",
        ("service",),
        "histogram",
    ),
    MetricDef(
        "bastion_upstream_duration_seconds",
        "Time from forwarding a request to the upstream's complete response head, by service.",
        ("service",),
        "histogram",
    ),
    MetricDef(
        "bastion_upstream_unavailable",
        "Workers holding an upstream target out of rotation, by why: 'unhealthy' (its active health "
        "check failed) or 'circuit_open' (its circuit breaker opened; open or half-open). 0 when every "
        "worker sends it traffic.",
        ("service", "target", "why"),
        "gauge",
    ),
    MetricDef(
        "bastion_upstream_transitions",
        "Changes of an upstream target's state in a worker, by what it became: unhealthy, healthy, "
        "circuit_open or circuit_closed.",
        ("service", "target", "to"),
        "counter",
    ),
    MetricDef(
        "bastion_blocked",
        "Requests refused (or flagged in shadow mode) by a stage or the core.",
        ("stage", "reason", "action"),
        "counter",
    ),
    MetricDef(
        "bastion_limit_rejections",
        "Requests refused for crossing a resource limit (body, head, target, time), by reason.",
        ("reason",),
        "counter",
    ),
    MetricDef(
        "bastion_stage_errors",
        "Stage failures: exceptions, missed deadlines and answers of the wrong type.",
        ("stage",),
        "counter",
    ),
    MetricDef(
        "bastion_sink_errors",
        "Exchange records a sink (access log, metrics, ...) failed to take, by sink.",
        ("sink",),
        "counter",
    ),
    MetricDef("bastion_upstream_errors", "Failed upstream exchanges by kind.", ("service", "kind"), "counter"),
    MetricDef("bastion_config_reloads", "Configuration reloads in workers, by result.", ("result",), "counter"),
    MetricDef(
        "bastion_ratelimit_fallback",
        "Rate limits switching between the shared state backend and the local fallback (failure_mode: open), "
        "by what they switched to: 'local' or 'shared'.",
        ("to",),
        "counter",
    ),
    MetricDef("bastion_client_connections", "Open client connections.", (), "gauge"),
    MetricDef(
        "bastion_audit_dropped",
        "Audit records dropped because the audit queue was full (each is also logged).",
        (),
        "counter",
    ),
    MetricDef(
        "bastion_detectors_dropped",
        "Exchange records the detectors did not read because their queue was full.",
        (),
        "counter",
    ),
    MetricDef(
        "bastion_alerts",
        "Alerts raised by the threat detectors, by detector and severity.",
        ("detector", "severity"),
        "counter",
    ),
    MetricDef(
        "bastion_detector_blocks",
        "Blocks a detector with action: block put on the block list, by detector and what it blocked "
        "(ip, credential or consumer).",
        ("detector", "kind"),
        "counter",
    ),
    MetricDef(
        "bastion_blocks_active",
        "Blocks this instance's detectors put on the block list that have not expired yet.",
        (),
        "gauge",
    ),
    MetricDef(
        "bastion_detector_errors",
        "Exchange records the detectors could not count (the state backend failed; logged at most once a minute).",
        (),
        "counter",
    ),
    MetricDef(
        "bastion_alert_delivery_errors",
        "Alerts a webhook did not take after every retry, by detector.",
        ("detector",),
        "counter",
    ),
    MetricDef("bastion_audit_queue_depth", "Audit records waiting to be written, at the last batch.", (), "gauge"),
    MetricDef(
        "bastion_audit_syslog_errors",
        "Audit records the syslog receiver did not take (down, slow, or a record too large for a datagram).",
        (),
        "counter",
    ),
    MetricDef(
        "bastion_otel_dropped",
        "Spans not exported because the OpenTelemetry exporter's queue was full.",
        (),
        "counter",
    ),
    MetricDef(
        "bastion_otel_export_errors",
        "Spans the OpenTelemetry collector did not take (down, slow, or an error answer).",
        (),
        "counter",
    ),
    MetricDef(
        "bastion_audit_store_errors",
        "Audit batches the store did not take (kept in the spool and written again).",
        (),
        "counter",
    ),
)


#: A status code's label, looked up instead of formatted for every request.
_CODES: tuple[str, ...] = tuple(str(code) for code in range(600))


class _Latency:
    """One service's latency histogram: a count per bucket (and +Inf), and their sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        # The first bucket whose bound is not below ``seconds`` (bisect_left), walked here:
        # most requests stop within the first few bounds, and calling ``bisect`` through
        # its module cost ~1,000 instructions a request (callgrind).
        buckets = LATENCY_BUCKETS
        n = len(buckets)
        i = 0
        while i < n and buckets[i] < seconds:
            i += 1
        self.counts[i] += 1
        self.total += seconds


class Metrics:
    """One worker's metrics."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[tuple[str, ...], float]] = {
            d.name: {} for d in DEFINITIONS if d.kind == "counter"
        }
        self.gauges: dict[str, float] = {d.name: 0.0 for d in DEFINITIONS if d.kind == "gauge" and not d.labels}
        #: Gauges with labels: name -> labels -> value (summed over workers, like the counters).
        self.labeled_gauges: dict[str, dict[tuple[str, ...], float]] = {
            d.name: {} for d in DEFINITIONS if d.kind == "gauge" and d.labels
        }
        #: service -> its latency histogram (request head to the end of the response)
        self._latency: dict[str, _Latency] = {}
        #: service -> its upstream latency histogram (forwarded to the upstream's response head)
        self._upstream_latency: dict[str, _Latency] = {}
        self._requests = self.counters["bastion_requests"]
        self._dir: str | None = None
        self._handle: asyncio.TimerHandle | None = None

    def inc(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        table = self.counters[name]
        table[labels] = table.get(labels, 0.0) + amount

    def gauge_add(self, name: str, amount: float) -> None:
        self.gauges[name] += amount

    def gauge_set(self, name: str, value: float) -> None:
        self.gauges[name] = value

    def labeled_gauge_add(self, name: str, labels: tuple[str, ...], amount: float) -> None:
        table = self.labeled_gauges[name]
        table[labels] = table.get(labels, 0.0) + amount

    def count_request(self, service: str, route: str, status: int, seconds: float) -> None:
        """One answered request: the requests counter and the latency histogram, inlined."""
        table = self._requests
        key = (service, route, _CODES[status] if 0 <= status < 600 else str(status))
        table[key] = table.get(key, 0.0) + 1.0
        self.observe_latency(service, seconds)

    def observe_latency(self, service: str, seconds: float) -> None:
        latency = self._latency.get(service)
        if latency is None:
            latency = self._latency[service] = _Latency()
        latency.observe(seconds)

    def observe_upstream(self, service: str, seconds: float) -> None:
        latency = self._upstream_latency.get(service)
        if latency is None:
            latency = self._upstream_latency[service] = _Latency()
        latency.observe(seconds)

    def snapshot(self) -> dict[str, Any]:
        return {
            "counters": {n: [[list(k), v] for k, v in t.items()] for n, t in self.counters.items()},
            "gauges": self.gauges,
            "labeled_gauges": {n: [[list(k), v] for k, v in t.items()] for n, t in self.labeled_gauges.items()},
            "histogram": {s: {"counts": h.counts, "sum": h.total} for s, h in self._latency.items()},
            "upstream_histogram": {s: {"counts": h.counts, "sum": h.total} for s, h in self._upstream_latency.items()},
        }

    def start(self, directory: str | None) -> None:
        """Write a snapshot into ``directory`` every second (no-op without one)."""
        self._dir = directory
        if directory:
            self._handle = asyncio.get_running_loop().call_later(SNAPSHOT_INTERVAL, self._tick)

    def _tick(self) -> None:
        self.write_snapshot()
        self._handle = asyncio.get_running_loop().call_later(SNAPSHOT_INTERVAL, self._tick)

    def write_snapshot(self) -> None:
        if not self._dir:
            return
        path = os.path.join(self._dir, f"worker-{os.getpid()}.json")
        tmp = path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(orjson.dumps(self.snapshot()))
            os.replace(tmp, path)  # readers never see half a file
        except OSError:
            pass  # metrics must never break serving; the next tick tries again

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.write_snapshot()


#: This process's metrics.
METRICS = Metrics()


class CountMetrics:
    """The sink that counts each exchange record: requests, latency, and refusals (by the
    core, or by a stage whether enforced or in shadow mode)."""

    name = "metrics"

    def __init__(self, metrics: Metrics = METRICS) -> None:
        self._metrics = metrics

    def __call__(self, record: ExchangeRecord) -> None:
        metrics = self._metrics
        metrics.count_request(record.service or "-", record.route or "-", record.status, record.seconds)
        upstream_seconds = record.upstream_seconds
        if upstream_seconds is not None:
            metrics.observe_upstream(record.service or "-", upstream_seconds)
        if record.blocked_by == "core":
            reason = record.reason or ""
            metrics.inc("bastion_blocked", ("core", reason, "block"))
            if reason in LIMIT_REASONS:
                metrics.inc("bastion_limit_rejections", (reason,))
        for d in record.decisions:
            if d.action == "block" or d.action == "monitor":
                metrics.inc("bastion_blocked", (d.stage, d.reason, d.action))
                if d.action == "block" and d.reason in LIMIT_REASONS:
                    metrics.inc("bastion_limit_rejections", (d.reason,))
