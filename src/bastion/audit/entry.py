"""An exchange record as the audit log keeps it: one flat row, built by the audit writer
(off the request path) from the read-only :class:`~bastion.types.ExchangeRecord`.

The row is what every audit output gets: a JSON line (with its ISO ``time``), a spool line
and a row of the store's ``audit_records`` table. The decision is spelled out: ``allowed``,
``monitored`` (a stage in shadow mode flagged the request) or ``blocked``, with the stage
that blocked it, the rule (a detection rule's id, else the reason code) and its category.
The evidence is what the stages left in the record: they redact it themselves (a detection
hit keeps a redacted snippet of the input, never the input), and no secret of a credential
is ever part of a record.
"""

from __future__ import annotations

import time
from typing import Any

from bastion.types import Decision, ExchangeRecord

#: Longest text kept per field (the store's column sizes): a client chooses these.
_MAX_USER_AGENT = 512
_MAX_HOST = 255
_MAX_PATH = 4096
#: The stage whose facts say which rule matched, and the one whose facts are its state.
_DETECTION = "detection"
_RATELIMIT = "ratelimit"


def _clip(value: str | None, limit: int) -> str | None:
    return value if value is None or len(value) <= limit else value[:limit]


def _ms(seconds: float) -> float:
    """Milliseconds to the microsecond (as the access log writes ``latency_ms``)."""
    return int(seconds * 1_000_000 + 0.5) / 1000


def _blocking(record: ExchangeRecord) -> Decision | None:
    """The decision of the stage that blocked the request (the last it recorded)."""
    for d in reversed(record.decisions):
        if d.stage == record.blocked_by:
            return d
    return None


def _rule_of(stage: str | None, reason: str | None, facts: Any) -> tuple[str | None, str | None]:
    """The rule and category of a decision: a detection's first matching rule and its
    category; otherwise the reason code (``ratelimit.exceeded``) and its first part."""
    if stage == _DETECTION and isinstance(facts, dict):
        hits = facts.get("hits")
        category = facts.get("category")
        if isinstance(hits, list) and hits and isinstance(hits[0], dict):
            return str(hits[0].get("rule")), str(category) if category else hits[0].get("category")
    if reason is None:
        return None, None
    return reason, reason.partition(".")[0]


def audit_row(record: ExchangeRecord, row_id: str, instance: str, worker: int) -> dict[str, Any]:
    """The audit row of ``record``, served by ``worker`` of ``instance``."""
    facts = record.facts
    decision = "allowed"
    stage = reason = None
    if record.blocked_by is not None:
        decision, stage = "blocked", record.blocked_by
        blocking = _blocking(record)
        reason = record.reason or (blocking.reason if blocking is not None else None)
    else:
        monitored = next((d for d in record.decisions if d.action == "monitor"), None)
        if monitored is not None:
            decision, stage, reason = "monitored", monitored.stage, monitored.reason
        elif record.reason is not None:  # a core refusal or a shutdown cut without a stage
            reason = record.reason
    rule, category = _rule_of(stage, reason, facts.get(stage) if stage else None)
    ratelimit = facts.get(_RATELIMIT)
    evidence = {name: value for name, value in facts.items() if name != _RATELIMIT}
    details: dict[str, Any] = {}
    if record.decisions:
        details["decisions"] = [
            {"stage": d.stage, "action": d.action, "reason": d.reason, "status": d.status} for d in record.decisions
        ]
    if evidence:
        details["evidence"] = evidence
    return {
        "id": row_id,
        "ts": record.ts,
        "request_id": record.request_id,
        "instance": instance,
        "worker": worker,
        "consumer": record.consumer,
        "credential": record.credential,
        "client": record.client,
        "method": record.method,
        "host": _clip(record.host, _MAX_HOST) or "",
        "path": _clip(record.path, _MAX_PATH),
        "route": record.route,
        "service": record.service,
        "status": record.status,
        "bytes_in": record.bytes_in,
        "bytes_out": record.bytes_out,
        "latency_ms": _ms(record.seconds),
        "upstream_ms": None if record.upstream_seconds is None else _ms(record.upstream_seconds),
        "decision": decision,
        "stage": stage,
        "rule": _clip(rule, 128),
        "category": _clip(category, 64),
        "reason": reason,
        "ratelimit": ratelimit if isinstance(ratelimit, str) else None,
        "tls": record.tls,
        "user_agent": _clip(record.user_agent, _MAX_USER_AGENT),
        "upstream": record.upstream,
        "upstream_error": record.upstream_error,
        "details": details,
    }


def iso_time(ts: float) -> str:
    """``ts`` (epoch seconds) as an ISO 8601 UTC time to the millisecond."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


__all__ = ["audit_row", "iso_time"]
