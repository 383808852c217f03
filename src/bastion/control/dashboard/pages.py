"""The dashboard's pages: overview, live feed, blocked requests, alerts, consumers and keys,
routes. Reading needs a viewer; every change needs an operator and the session's CSRF token
(checked by :func:`bastion.control.auth.requires`), and is written to the admin audit trail
in the same store transaction as the change."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from bastion.audit.storage import NOT_ALLOWED, AuditQuery
from bastion.config.model import CONSUMER_NAME
from bastion.control.accounts.roles import Role
from bastion.control.auth import principal_of
from bastion.control.context import AdminContext
from bastion.control.dashboard import charts
from bastion.control.dashboard.web import PREFIX, form_text, render
from bastion.store import adminaudit, alertstate, consumers, keys
from bastion.store.errors import StoreError
from bastion.store.models import AlertRecord, AuditRecord, Consumer, utcnow

DECISIONS = ("allowed", "monitored", "blocked")
#: The feed looks this far back at each poll: each worker writes its records in its own
#: batches, so one may reach the store after a later one was sent (as ``bastion logs tail``).
FEED_LOOKBACK = 30.0
#: A feed stream ends after this long and the browser reconnects (EventSource does so by
#: itself, from the last event's id): each reconnection checks the session again.
FEED_LIFETIME = 60.0
FEED_POLL = 1.0
#: The overview reads at most this many records of its window (the newest): the charts of a
#: busy gateway's 24 hours then cover its last part, and the page says so.
OVERVIEW_ROWS = 200_000
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")


class Pages:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def _audit_on(self) -> bool:
        audit = self.ctx.config.config.audit
        return audit.enabled and audit.store

    # -- overview ----------------------------------------------------------------------------
    async def overview(self, request: Request) -> Response:
        window = request.query_params.get("window", "1h")
        if window not in charts.WINDOWS:
            window = "1h"
        until = utcnow()
        since = until - charts.WINDOWS[window]
        rows = await self.ctx.call(self._overview_rows, since) if self._audit_on() else []
        buckets, totals = charts.bucketize(rows, since, until)
        return render(request, "overview.html", principal=principal_of(request), audit_on=self._audit_on(),
                      window=window, windows=list(charts.WINDOWS), capped=len(rows) >= OVERVIEW_ROWS,
                      cap=OVERVIEW_ROWS, totals=totals, charts=charts.overview_charts(buckets))

    def _overview_rows(self, since: datetime) -> list[tuple[datetime, int, str, float]]:
        store = self.ctx.store()
        query = (select(AuditRecord.ts, AuditRecord.status, AuditRecord.decision, AuditRecord.latency_ms)
                 .where(AuditRecord.ts >= since).order_by(AuditRecord.ts.desc()).limit(OVERVIEW_ROWS))
        with store.read() as session:
            return [(ts, status, decision, latency) for ts, status, decision, latency in session.execute(query)]

    # -- live feed ---------------------------------------------------------------------------
    async def feed(self, request: Request) -> Response:
        filters = _feed_filters(request.query_params)
        return render(request, "feed.html", principal=principal_of(request), audit_on=self._audit_on(),
                      filters=filters, decisions=DECISIONS, query=request.url.query)

    async def feed_stream(self, request: Request) -> Response:
        """Server-sent events: one ``record`` event per new audit record matching the filters."""
        filters = _feed_filters(request.query_params)
        query = AuditQuery(consumer=filters["consumer"] or None, route=filters["route"] or None,
                           status=int(filters["status"]) if filters["status"] else None,
                           decision=filters["decision"] or None)
        if query.consumer is not None:
            query = replace(query, consumer=await self.ctx.call(self._consumer_id, query.consumer))
        resume = _float(request.headers.get("last-event-id"))
        return StreamingResponse(self._events(query, resume), media_type="text/event-stream")

    def _consumer_id(self, name: str) -> str:
        """The id the audit log keeps of the consumer ``name`` (the text itself if no consumer
        has that name: it may be an id already)."""
        with self.ctx.store().read() as session:
            consumer = consumers.find(session, name)
            return consumer.id if consumer is not None else name

    async def _events(self, query: AuditQuery, resume: float | None) -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        deadline = time.monotonic() + FEED_LIFETIME
        seen: dict[str, float] = {}
        first = resume is None
        newest = resume if resume is not None else time.time()
        while True:
            since = None if first else datetime.fromtimestamp(newest - FEED_LOOKBACK, UTC)
            rows = await self.ctx.call(self._feed_rows, query, since, first)
            for ts, row in rows:
                if row["id"] in seen or (resume is not None and ts <= resume):
                    continue
                seen[row["id"]] = ts
                newest = max(newest, ts)
                data = orjson.dumps(row).decode()
                yield f"id: {ts:.6f}\nevent: record\ndata: {data}\n\n".encode()
            first = False
            horizon = newest - 2 * FEED_LOOKBACK
            seen = {k: v for k, v in seen.items() if v >= horizon}
            if time.monotonic() >= deadline:
                return
            yield b": keep-alive\n\n"
            await asyncio.sleep(FEED_POLL)

    def _feed_rows(self, query: AuditQuery, since: datetime | None, first: bool) -> list[tuple[float, dict[str, Any]]]:
        if not self._audit_on():
            return []
        store = self.ctx.store()
        selection = (query if since is None else replace(query, since=since)).select()
        limit = 20 if first else 500
        with store.read() as session:
            rows = list(session.scalars(selection.order_by(AuditRecord.ts.desc(), AuditRecord.id.desc()).limit(limit)))
            names = _consumer_names(session, rows)
        rows.reverse()
        return [(r.ts.timestamp(), _feed_record(r, names)) for r in rows]

    # -- blocked requests ----------------------------------------------------------------------
    async def blocked(self, request: Request) -> Response:
        rows = await self.ctx.call(self._blocked_rows) if self._audit_on() else []
        return render(request, "blocked.html", principal=principal_of(request), audit_on=self._audit_on(), rows=rows)

    def _blocked_rows(self) -> list[dict[str, Any]]:
        store = self.ctx.store()
        query = (select(AuditRecord).where(AuditRecord.decision == "blocked", NOT_ALLOWED)
                 .order_by(AuditRecord.ts.desc(), AuditRecord.id.desc()).limit(200))
        with store.read() as session:
            rows = list(session.scalars(query))
            names = _consumer_names(session, rows)
            return [dict(_feed_record(r, names), evidence=_evidence(r.details), reason=r.reason) for r in rows]

    # -- alerts ----------------------------------------------------------------------------------
    async def alerts(self, request: Request) -> Response:
        rows = await self.ctx.call(self._alert_rows)
        history = self.ctx.config.config.detectors.history
        return render(request, "alerts.html", principal=principal_of(request), rows=rows, history=history,
                      csrf=principal_of(request).csrf, can_write=principal_of(request).role.allows(Role.OPERATOR))

    def _alert_rows(self) -> list[dict[str, Any]]:
        store = self.ctx.store()
        query = select(AlertRecord).order_by(AlertRecord.last_seen.desc()).limit(200)
        with store.read() as session:
            return [{"id": a.id, "last_seen": _when(a.last_seen), "detector": a.detector, "severity": a.severity,
                     "action": a.action, "count": a.count, "summary": a.summary,
                     "subject": ", ".join(f"{k}={v}" for k, v in sorted(a.subject.items())), "status": a.status,
                     "handled_by": a.handled_by, "handled_at": _when(a.handled_at)}
                    for a in session.scalars(query)]

    async def alert_status(self, request: Request) -> Response:
        form = await request.form()
        status = form_text(form, "status", 32)
        alert_id = request.path_params["alert_id"]
        principal = principal_of(request)
        try:
            await self.ctx.call(self._set_alert_status, alert_id, status, principal.audit())
        except StoreError as exc:
            return render(request, "message.html", 422, principal=principal, title="Not changed", message=str(exc))
        return RedirectResponse(PREFIX + "/alerts", status_code=303)

    def _set_alert_status(self, alert_id: str, status: str, who: dict[str, str]) -> None:
        store = self.ctx.store()
        with store.write() as session:
            alert, before = alertstate.set_status(session, alert_id, status, who["actor"])
            _audit(session, who, "alert.status", f"alert:{alert.id}", before={"status": before},
                   after={"status": status})

    # -- consumers and keys ----------------------------------------------------------------------
    async def consumers(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        principal = principal_of(request)
        rows = await self.ctx.call(self._consumer_rows)
        return render(request, "consumers.html", status, principal=principal, rows=rows, error=error,
                      csrf=principal.csrf, can_write=principal.role.allows(Role.OPERATOR))

    def _consumer_rows(self) -> list[dict[str, Any]]:
        store = self.ctx.store()
        with store.read() as session:
            by_consumer: dict[str, list[dict[str, Any]]] = {}
            for key, name in keys.list_keys(session):
                by_consumer.setdefault(name, []).append(
                    {"id": key.id, "prefix": key.prefix, "scopes": " ".join(key.scopes) or "-",
                     "created": _when(key.created_at), "expires": _when(key.expires_at),
                     "last_used": _when(key.last_used_at), "revoked": key.revoked_at is not None})
            return [{"name": c.name, "roles": ", ".join(c.roles) or "-", "plan": c.plan or "-",
                     "source": "config" if c.declared else "store", "keys": by_consumer.get(c.name, [])}
                    for c in consumers.list_all(session)]

    async def create_consumer(self, request: Request) -> Response:
        form = await request.form()
        name = form_text(form, "name", 200).strip()
        roles = [r.strip() for r in form_text(form, "roles").split(",") if r.strip()]
        plan = form_text(form, "plan", 64).strip() or None
        if not re.match(CONSUMER_NAME, name):
            return await self.consumers(request, f"{name!r} is not a consumer name (letters, digits and _ . @ -, "
                                                 "at most 128).", 422)
        try:
            await self.ctx.call(self._create_consumer, name, roles, plan, principal_of(request).audit())
        except StoreError as exc:
            return await self.consumers(request, str(exc), 409)
        return RedirectResponse(PREFIX + "/consumers", status_code=303)

    def _create_consumer(self, name: str, roles: list[str], plan: str | None, who: dict[str, str]) -> None:
        store = self.ctx.store()
        with store.write() as session:
            consumer = consumers.create(session, name, roles=roles, plan=plan)
            _audit(session, who, "consumer.create", f"consumer:{consumer.name}",
                   after={"name": consumer.name, "roles": consumer.roles, "plan": consumer.plan})

    async def create_key(self, request: Request) -> Response:
        form = await request.form()
        consumer = form_text(form, "consumer", 200).strip()
        scopes = sorted({s for s in re.split(r"[\s,]+", form_text(form, "scopes")) if s})
        days = form_text(form, "expires_days", 8).strip()
        bad = [s for s in scopes if not _SCOPE.match(s)]
        if bad:
            return await self.consumers(request, f"{bad[0]!r} is not a scope (printable, no quotes or backslashes).",
                                        422)
        if days and (not days.isdigit() or not 1 <= int(days) <= 3650):
            return await self.consumers(request, "The lifetime is a number of days from 1 to 3650, or empty.", 422)
        expires_at = utcnow() + timedelta(days=int(days)) if days else None
        try:
            new = await self.ctx.call(self._create_key, consumer, scopes, expires_at, principal_of(request).audit())
        except StoreError as exc:
            return await self.consumers(request, str(exc), 422)
        return render(request, "key_created.html", principal=principal_of(request), key=new)

    def _create_key(self, consumer: str, scopes: list[str], expires_at: datetime | None,
                    who: dict[str, str]) -> NewKeyView:
        store = self.ctx.store()
        with store.write() as session:
            new = keys.create(session, store.pepper, consumer, scopes, expires_at)
            record = new.record
            shown = {"id": record.id, "consumer": consumer, "prefix": record.prefix, "scopes": record.scopes,
                     "expires_at": record.expires_at.isoformat() if record.expires_at else None}
            _audit(session, who, "key.create", f"key:{record.id}", after=shown)
            return NewKeyView(record.id, consumer, new.secret, " ".join(record.scopes) or "-",
                              _when(record.expires_at))

    # -- routes --------------------------------------------------------------------------------
    async def routes(self, request: Request) -> Response:
        # What `bastion check` prints for each route: its authentication and the stages that run.
        from bastion.config.effective import enforced

        loaded = self.ctx.config
        rows = [{"methods": ", ".join(sorted(r.methods - {"HEAD"})) or "HEAD",
                 "path": r.path + ("*" if r.prefix else ""), "service": r.service, "id": r.id,
                 "policy": enforced(r), "origin": r.origin}
                for r in loaded.routes]
        builtin = [{"methods": ", ".join(sorted(r.methods - {"HEAD"})), "path": r.path, "id": r.id}
                   for r in loaded.builtin_routes]
        return render(request, "routes.html", principal=principal_of(request), rows=rows, builtin=builtin)


@dataclass(frozen=True)
class NewKeyView:
    id: str
    consumer: str
    secret: str
    scopes: str
    expires: str


def _audit(session: Session, who: dict[str, str], action: str, target: str, *,
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> None:
    """The admin audit entry of a change, in the change's own transaction."""
    adminaudit.record(session, actor=who["actor"], via=who["via"], source=who["source"], action=action,
                      target=target, before=before, after=after)


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _feed_filters(params: Mapping[str, str]) -> dict[str, str]:
    """The feed's filters as the form sends them, checked (an invalid one is dropped)."""
    status = params.get("status", "").strip()
    decision = params.get("decision", "").strip()
    return {"status": status if status.isdigit() and 100 <= int(status) <= 599 else "",
            "decision": decision if decision in DECISIONS else "",
            "route": params.get("route", "").strip()[:255], "consumer": params.get("consumer", "").strip()[:128]}


def _consumer_names(session: Session, rows: list[AuditRecord]) -> dict[str, str]:
    """The names of the consumers ``rows`` name (the audit log keeps their ids)."""
    ids = {r.consumer for r in rows if r.consumer is not None}
    if not ids:
        return {}
    return {cid: name for cid, name in session.execute(select(Consumer.id, Consumer.name).where(Consumer.id.in_(ids)))}


def _feed_record(r: AuditRecord, names: Mapping[str, str]) -> dict[str, Any]:
    return {"id": r.id, "time": r.ts.astimezone(UTC).strftime("%H:%M:%S.") + f"{r.ts.microsecond // 1000:03d}",
            "status": r.status, "decision": r.decision, "method": r.method, "path": r.path or "-",
            "route": r.route or "-", "consumer": names.get(r.consumer, r.consumer) if r.consumer else "-",
            "client": r.client,
            "latency_ms": round(r.latency_ms, 1), "stage": r.stage or "", "rule": r.rule or "",
            "category": r.category or ""}


def _evidence(details: dict[str, Any]) -> str:
    """The stages' evidence as the audit log stored it (the stages redacted it already)."""
    evidence = details.get("evidence")
    return json.dumps(evidence, indent=1, sort_keys=True, default=str) if evidence else ""


__all__ = ["Pages"]
