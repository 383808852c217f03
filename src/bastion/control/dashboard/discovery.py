"""The dashboard's discovery page: what ``bastion discover`` prints, from the same audit log.

Endpoints clients called that no route declares (shadow and zombie endpoints, probes),
declared routes nobody called, and what the ``discovery`` stage observed on the routes it
runs on (query parameters and their types, the sensitive data types responses carried).
The draft OpenAPI document of the undeclared and observed endpoints downloads as YAML, for
a person to review and adopt: it is never applied by the gateway itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from bastion.control.auth import principal_of
from bastion.control.context import AdminContext
from bastion.control.dashboard.web import render

#: The look-back periods the page offers (a query parameter, so the choice is a link).
PERIODS: dict[str, timedelta] = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7),
                                 "30d": timedelta(days=30)}
DEFAULT_PERIOD = "24h"


class Discovery:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def _audit_on(self) -> bool:
        audit = self.ctx.config.config.audit
        return audit.enabled and audit.store

    @staticmethod
    def _period(request: Request) -> str:
        asked = request.query_params.get("since", DEFAULT_PERIOD)
        return asked if asked in PERIODS else DEFAULT_PERIOD

    async def page(self, request: Request) -> Response:
        period = self._period(request)
        found: dict[str, list[dict[str, Any]]] = {"undeclared": [], "unused": [], "observed": []}
        if self._audit_on():
            found = await self.ctx.call(self._documents, period)
        return render(request, "discovery.html", principal=principal_of(request), audit_on=self._audit_on(),
                      period=period, periods=list(PERIODS), undeclared=found["undeclared"], unused=found["unused"],
                      observed=found["observed"])

    async def draft(self, request: Request) -> Response:
        """The draft OpenAPI document (YAML) of the undeclared and observed endpoints."""
        import yaml

        period = self._period(request)
        if not self._audit_on():
            return Response("The audit log is off: there is no traffic to discover from.\n", status_code=409,
                            media_type="text/plain")
        document = await self.ctx.call(self._draft, period)
        body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        return Response(body, media_type="application/yaml", headers={
            "Content-Disposition": f'attachment; filename="bastion-discovered-{period}.yaml"'})

    def _results(self, period: str) -> tuple[list[Any], list[Any], list[Any]]:
        from bastion.audit.discovery import DeclaredRoute, observed, undeclared, unused

        start = datetime.now(UTC) - PERIODS[period]
        engine = self.ctx.store().engine
        routes = [DeclaredRoute(r.id, r.service, r.methods, r.path) for r in self.ctx.config.routes]
        return undeclared(engine, start), unused(engine, start, routes), observed(engine, start)

    def _documents(self, period: str) -> dict[str, list[dict[str, Any]]]:
        found, never, seen = self._results(period)
        return {"undeclared": [e.document() for e in found], "unused": [u.document() for u in never],
                "observed": [o.document() for o in seen]}

    def _draft(self, period: str) -> dict[str, Any]:
        from bastion.audit.discovery import openapi_fragment

        found, _, seen = self._results(period)
        document, _skipped = openapi_fragment(found, seen)
        return document
