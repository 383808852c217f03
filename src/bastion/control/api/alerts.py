"""``/alerts``: the threat detectors' alerts, newest first, with filters; acknowledge and
resolve them (who and when are kept on the alert, and in the admin audit trail)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion.control.accounts.roles import Role
from bastion.control.api import Endpoint, Handler
from bastion.control.api.common import (
    PAGING,
    ApiError,
    audited,
    cursor_of,
    iso,
    limit_of,
    list_schema,
    page,
    query_time,
    time_cursor,
    timestamp,
)
from bastion.control.auth import principal_of
from bastion.control.context import AdminContext
from bastion.store import alertstate
from bastion.store.models import AlertRecord, utcnow

ALERT = {
    "type": "object",
    "required": ["id", "detector", "severity", "action", "summary", "subject", "count", "status"],
    "properties": {
        "id": {"type": "string"}, "detector": {"type": "string"}, "severity": {"type": "string"},
        "action": {"type": "string", "description": "What the detector did: alert, or block (its subject)."},
        "summary": {"type": "string"}, "subject": {"type": "object"}, "count": {"type": "integer"},
        "window_seconds": {"type": "number"},
        "first_seen": timestamp("First event.", nullable=False),
        "last_seen": timestamp("Latest event.", nullable=False),
        "instance": {"type": "string"},
        "status": {"enum": list(alertstate.STATUSES)},
        "handled_by": {"type": ["string", "null"]}, "handled_at": timestamp("When its status last changed."),
    },
}


def view(alert: AlertRecord) -> dict[str, Any]:
    return {"id": alert.id, "detector": alert.detector, "severity": alert.severity, "action": alert.action,
            "summary": alert.summary, "subject": dict(alert.subject), "count": alert.count,
            "window_seconds": alert.window_seconds, "first_seen": iso(alert.first_seen),
            "last_seen": iso(alert.last_seen), "instance": alert.instance, "status": alert.status,
            "handled_by": alert.handled_by, "handled_at": iso(alert.handled_at)}


async def list_alerts(ctx: AdminContext, request: Request) -> Response:
    limit, after = limit_of(request), time_cursor(cursor_of(request))
    since = query_time(request, "since") or utcnow() - timedelta(days=1)
    filters = {name: request.query_params.get(name) for name in ("detector", "status", "severity")}
    if filters["status"] is not None and filters["status"] not in alertstate.STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(alertstate.STATUSES)}.")

    def fetch() -> dict[str, Any]:
        query = select(AlertRecord).where(AlertRecord.last_seen >= since)
        for name, value in filters.items():
            if value is not None:
                query = query.where(getattr(AlertRecord, name) == value)
        if after is not None:
            when, alert_id = after
            query = query.where(or_(AlertRecord.last_seen < when,
                                    and_(AlertRecord.last_seen == when, AlertRecord.id > alert_id)))
        query = query.order_by(AlertRecord.last_seen.desc(), AlertRecord.id).limit(limit + 1)
        with ctx.store().read() as session:
            found, cursor = page(list(session.scalars(query)), limit, lambda a: f"{a.last_seen.isoformat()} {a.id}")
            return {"items": [view(a) for a in found], "next_cursor": cursor}

    return JSONResponse(await ctx.call(fetch))


def _setter(status: str, action: str) -> Handler:
    async def handler(ctx: AdminContext, request: Request) -> Response:
        alert_id, who = request.path_params["alert_id"], principal_of(request)

        def write() -> dict[str, Any]:
            with audited(ctx, who) as (session, note):
                if session.get(AlertRecord, alert_id) is None:
                    raise ApiError(404, f"No alert has the id {alert_id!r}.")
                alert, before = alertstate.set_status(session, alert_id, status, who.name)
                shown = view(alert)
                note(action, f"alert:{alert_id}", before={"status": before}, after={"status": status})
                return shown

        return JSONResponse(await ctx.call(write))

    return handler


_ALERT_GONE = {404: "No alert has that id."}
ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/alerts", list_alerts, Role.VIEWER, "The detectors' alerts, newest first (the last day by "
             "default).", "listAlerts", "alerts", response_schema=list_schema(ALERT),
             query={**PAGING,
                    "since": ({"type": "string", "format": "date-time"}, "Seen at or after this time."),
                    "detector": ({"type": "string"}, "Only this detector's (brute_force, scanner...)."),
                    "status": ({"enum": list(alertstate.STATUSES)}, "Only alerts in this status."),
                    "severity": ({"type": "string"}, "Only this severity.")}),
    Endpoint("POST", "/alerts/{alert_id}/acknowledge", _setter("acknowledged", "alert.acknowledge"), Role.OPERATOR,
             "Acknowledge an alert (someone is on it).", "acknowledgeAlert", "alerts", response_schema=ALERT,
             responses=_ALERT_GONE),
    Endpoint("POST", "/alerts/{alert_id}/resolve", _setter("resolved", "alert.resolve"), Role.OPERATOR,
             "Resolve an alert.", "resolveAlert", "alerts", response_schema=ALERT, responses=_ALERT_GONE),
]
