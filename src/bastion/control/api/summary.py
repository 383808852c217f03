"""``/metrics/summary``: requests, error rate, blocked rate and latency percentiles over the
last minutes, from the audit records when the audit log keeps them in the store (a true
window), else from the workers' Prometheus counters (totals since the gateway started)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion.control.accounts.roles import Role
from bastion.control.api import Endpoint
from bastion.control.api.common import query_int
from bastion.control.context import AdminContext
from bastion.proxy.metrics import LATENCY_BUCKETS
from bastion.store.models import AuditRecord, utcnow

PERCENTILES = (50, 95, 99)


def _rates(requests: int, errors: int, blocked: int) -> dict[str, Any]:
    return {"requests": requests, "errors": errors, "blocked": blocked,
            "error_rate": errors / requests if requests else 0.0,
            "blocked_rate": blocked / requests if requests else 0.0}


def from_audit(session: Session, minutes: int) -> dict[str, Any]:
    """Counts by SQL, and each percentile as the one latency at its rank (no rows loaded)."""
    start = utcnow() - timedelta(minutes=minutes)
    window = AuditRecord.ts >= start
    requests, errors, blocked = session.execute(select(
        func.count(), func.count().filter(AuditRecord.status >= 500),
        func.count().filter(AuditRecord.decision == "blocked")).where(window)).one()
    latency: dict[str, float | None] = {}
    for p in PERCENTILES:
        rank = max(0, -(-requests * p // 100) - 1)  # nearest rank
        latency[f"p{p}"] = session.execute(select(AuditRecord.latency_ms).where(window)
                                           .order_by(AuditRecord.latency_ms).offset(rank).limit(1)).scalar() \
            if requests else None
    return {"source": "audit", "minutes": minutes, **_rates(requests, errors, blocked), "latency_ms": latency}


def from_metrics(totals: dict[str, Any]) -> dict[str, Any]:
    """Since start, from the counters; percentiles as the upper bound of their histogram bucket."""
    answered = totals["counters"].get("bastion_requests", {})
    requests = int(sum(answered.values()))
    errors = int(sum(v for labels, v in answered.items() if str(labels[-1]).startswith("5")))
    refused = totals["counters"].get("bastion_blocked", {})
    blocked = int(sum(v for labels, v in refused.items() if labels[-1] == "block"))
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    for h in totals["histogram"].values():
        counts = [a + b for a, b in zip(counts, h["counts"], strict=True)]
    seen = sum(counts)
    latency: dict[str, float | None] = {}
    for p in PERCENTILES:
        value: float | None = None
        if seen:
            target, cumulative = seen * p / 100, 0
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
                cumulative += count
                if cumulative >= target:
                    value = None if bound == float("inf") else bound * 1000
                    break
        latency[f"p{p}"] = value
    return {"source": "metrics", "minutes": None, **_rates(requests, errors, blocked), "latency_ms": latency}


async def summary(ctx: AdminContext, request: Request) -> Response:
    minutes = query_int(request, "minutes", 15, 1, 1440)
    audit = ctx.config.config.audit
    if audit.enabled and audit.store:

        def fetch() -> dict[str, Any]:
            with ctx.store().read() as session:
                return from_audit(session, minutes)

        return JSONResponse(await ctx.call(fetch))
    return JSONResponse(from_metrics(await ctx.call(ctx.collector.totals)))


_SUMMARY = {"type": "object", "required": ["source", "requests", "error_rate", "blocked_rate", "latency_ms"],
            "properties": {
                "source": {"enum": ["audit", "metrics"], "description": "audit: the last `minutes` of audit "
                           "records; metrics: the counters since the gateway started (`minutes` is null)."},
                "minutes": {"type": ["integer", "null"]}, "requests": {"type": "integer"},
                "errors": {"type": "integer", "description": "Answers 500 and above."},
                "blocked": {"type": "integer"}, "error_rate": {"type": "number"}, "blocked_rate": {"type": "number"},
                "latency_ms": {"type": "object", "description": "p50, p95, p99 (null without requests; from "
                               "metrics, the upper bound of the histogram bucket)."}}}
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/metrics/summary", summary, Role.VIEWER,
             "Requests, error rate, blocked rate and latency percentiles of the last minutes.", "getMetricsSummary",
             "metrics", response_schema=_SUMMARY,
             query={"minutes": ({"type": "integer", "minimum": 1, "maximum": 1440, "default": 15},
                                "The window, from the audit records (ignored without them).")}),
]
