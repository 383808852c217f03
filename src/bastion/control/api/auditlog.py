"""``/audit-log``: the requests' audit records, with the filters of ``bastion logs query``;
``/admin-audit``: the control plane's own trail (who changed what), for admins."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion.audit.storage import AuditQuery, row_dict
from bastion.control.accounts.roles import Role
from bastion.control.api import Endpoint
from bastion.control.api.common import (
    PAGING,
    ApiError,
    cursor_of,
    limit_of,
    list_schema,
    page,
    query_int,
    query_time,
    time_cursor,
)
from bastion.control.context import AdminContext
from bastion.store import adminaudit
from bastion.store.models import AuditRecord, utcnow

DECISIONS = ("allowed", "monitored", "blocked")


async def query_audit_log(ctx: AdminContext, request: Request) -> Response:
    limit, after = limit_of(request), time_cursor(cursor_of(request))
    params = request.query_params
    decision = params.get("decision")
    if decision is not None and decision not in DECISIONS:
        raise ApiError(400, f"decision must be one of {', '.join(DECISIONS)}.")
    status = query_int(request, "status", 0, 100, 599) if "status" in params else None
    selection = AuditQuery(query_time(request, "since") or utcnow() - timedelta(hours=1), query_time(request, "until"),
                           params.get("consumer"), params.get("route"), status, decision, params.get("rule")).select()

    def fetch() -> dict[str, Any]:
        query = selection
        if after is not None:
            when, record_id = after
            query = query.where(or_(AuditRecord.ts < when, and_(AuditRecord.ts == when, AuditRecord.id < record_id)))
        query = query.order_by(AuditRecord.ts.desc(), AuditRecord.id.desc()).limit(limit + 1)
        with ctx.store().read() as session:
            found, cursor = page(list(session.scalars(query)), limit, lambda r: f"{r.ts.isoformat()} {r.id}")
            return {"items": [row_dict(r) for r in found], "next_cursor": cursor}

    return JSONResponse(await ctx.call(fetch))


async def query_admin_audit(ctx: AdminContext, request: Request) -> Response:
    limit = query_int(request, "limit", 100, 1, 1000)
    since, actor, action = query_time(request, "since"), request.query_params.get("actor"), \
        request.query_params.get("action")

    def fetch() -> dict[str, Any]:
        with ctx.store().read() as session:
            entries = adminaudit.query(session, since=since, actor=actor, action=action, limit=limit)
            return {"items": [adminaudit.as_dict(e) for e in entries], "next_cursor": None}

    return JSONResponse(await ctx.call(fetch))


_RECORD = {"type": "object", "description": "An audit record: the fields of the audit log's JSON lines."}
_ENTRY = {"type": "object", "required": ["id", "ts", "actor", "via", "action", "target", "source"], "properties": {
    "id": {"type": "integer"}, "ts": {"type": "string", "format": "date-time"}, "actor": {"type": "string"},
    "via": {"type": "string"}, "action": {"type": "string"}, "target": {"type": "string"},
    "before": {"type": ["object", "null"]}, "after": {"type": ["object", "null"]}, "source": {"type": "string"}}}
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/audit-log", query_audit_log, Role.VIEWER,
             "The requests' audit records (audit: in the configuration), newest first; the last hour by default.",
             "queryAuditLog", "audit", response_schema=list_schema(_RECORD),
             query={**PAGING,
                    "since": ({"type": "string", "format": "date-time"}, "At or after this time."),
                    "until": ({"type": "string", "format": "date-time"}, "Before this time."),
                    "consumer": ({"type": "string"}, "Only this consumer's requests (its id)."),
                    "route": ({"type": "string"}, "Only this route (its id or operationId)."),
                    "status": ({"type": "integer", "minimum": 100, "maximum": 599}, "Only this status code."),
                    "decision": ({"enum": list(DECISIONS)}, "Only allowed, monitored or blocked requests."),
                    "rule": ({"type": "string"}, "Only this rule or reason code (ratelimit.exceeded...).")}),
    Endpoint("GET", "/admin-audit", query_admin_audit, Role.ADMIN,
             "The admin audit trail: every write on the control plane, with who, what, before/after and from "
             "where, newest first.", "queryAdminAudit", "audit", response_schema=list_schema(_ENTRY),
             query={"limit": PAGING["limit"],
                    "since": ({"type": "string", "format": "date-time"}, "At or after this time."),
                    "actor": ({"type": "string"}, "Only this actor's entries (as recorded)."),
                    "action": ({"type": "string"}, "Only this action (consumer.create, key.revoke...).")}),
]
