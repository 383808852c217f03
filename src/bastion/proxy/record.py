"""The access record of an exchange: begun with its head, completed at its end, then
counted (metrics) and written (access log)."""

from __future__ import annotations

import time
from typing import Any

from bastion.proxy.accesslog import AccessLog
from bastion.proxy.http1 import Incoming
from bastion.proxy.metrics import METRICS
from bastion.types import Exchange

#: Facts stages leave in ``exchange.context`` that belong in the access log.
_LOGGED_CONTEXT = ("validation", "detection")


def new_record(req: Incoming, request_id: str, client: str) -> dict[str, Any]:
    """The access record of a request, before anything is known but its head."""
    return {
        "ts": time.time(),
        "request_id": request_id,
        "client": client,
        "method": req.method,
        "path": None,
        "route": None,
        "service": None,
        "status": 0,
        "bytes_in": 0,
        "bytes_out": 0,
    }


def finish_record(access_log: AccessLog, ex: Exchange | None, record: dict[str, Any], req: Incoming) -> None:
    """Complete the access record with what the stages decided, then count and log it."""
    seconds = time.perf_counter() - req.started
    record["latency_ms"] = round(seconds * 1000, 3)
    service = record["service"] or "-"
    METRICS.count_request(service, record["route"] or "-", record["status"], seconds)
    access_log.write(record)
    if ex is not None:
        if ex.blocked_by:
            record["blocked_by"] = ex.blocked_by
        if ex.decisions:
            record["decisions"] = [{"stage": d.stage, "action": d.action, "reason": d.reason} for d in ex.decisions]
            for d in ex.decisions:
                if d.action in ("block", "monitor"):
                    METRICS.inc("bastion_blocked", (d.stage, d.reason, d.action))
        context = ex.context
        for key in _LOGGED_CONTEXT:
            if key in context:
                record[key] = context[key]


__all__ = ["finish_record", "new_record"]
