"""The dashboard's reports page: the static audit of the running configuration and its
OpenAPI documents (``bastion audit``'s engine, run on demand), and the scan reports
``bastion scan --format json --output`` wrote into ``admin.reports_dir``.

Any viewer reads them; an operator re-runs the audit. The audit's last result is kept in
the admin process (it is recomputed from the files, so nothing needs storing). A scan report
is shown by the tester's own HTML renderer, as a document of its own: it carries inline CSS,
so it is served under a policy that allows inline style and nothing else (no script at all).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from bastion.config.loader import resolve_path
from bastion.control.accounts.roles import Role
from bastion.control.auth import principal_of
from bastion.control.context import AdminContext
from bastion.control.dashboard.web import PREFIX, render

#: A scan report's page allows its own inline CSS, and nothing else: no script, no request.
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; "
              "base-uri 'none'; form-action 'none'")
#: Reports larger than this are listed but not opened (a scan of a big API stays well below).
MAX_REPORT_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class ScanEntry:
    """A JSON file of the reports folder: a scan report, or why it is not shown."""

    name: str
    modified: str
    target: str = "-"
    summary: dict[str, int] | None = None
    problem: str | None = None


@dataclass(frozen=True)
class AuditRun:
    """The last audit: one JSON report (``bastion audit --format json``) per OpenAPI document."""

    when: str
    by: str
    reports: list[dict[str, Any]]
    errors: list[str]


class Reports:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx
        self._audit: AuditRun | None = None

    def folder(self) -> Path | None:
        configured = self.ctx.settings.reports_dir
        return None if configured is None else resolve_path(self.ctx.config.path.parent, configured)

    # -- the list ------------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        folder = self.folder()
        scans = await self.ctx.call(_list_scans, folder) if folder is not None else []
        return render(request, "reports.html", principal=principal_of(request), folder=folder, scans=scans,
                      audit=self._audit, can_run=principal_of(request).role.allows(Role.OPERATOR))

    # -- the audit -----------------------------------------------------------------------------
    async def audit(self, request: Request) -> Response:
        """The last audit; the first reader runs it (it only reads files)."""
        if self._audit is None:
            self._audit = await self.ctx.call(self._run_audit, principal_of(request).name)
        return render(request, "audit_report.html", principal=principal_of(request), audit=self._audit,
                      can_run=principal_of(request).role.allows(Role.OPERATOR))

    async def rerun(self, request: Request) -> Response:
        self._audit = await self.ctx.call(self._run_audit, principal_of(request).name)
        return RedirectResponse(PREFIX + "/reports/audit", status_code=303)

    def _run_audit(self, who: str) -> AuditRun:
        from bastion.config import ConfigError
        from bastion.tester.audit import audit_files
        from bastion.tester.audit.report import to_json

        loaded = self.ctx.config
        reports: list[dict[str, Any]] = []
        errors: list[str] = []
        specs = [resolve_path(loaded.path.parent, s.openapi) for s in loaded.config.services if s.openapi is not None]
        if not specs:
            errors.append("No service of the configuration has an OpenAPI document (openapi:): the audit reviews "
                          "a document together with the configuration.")
        for spec in specs:
            try:
                reports.append(to_json(audit_files(spec, loaded.path)))
            except ConfigError as exc:
                errors.append(f"{spec}: {exc}")
        when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        return AuditRun(when, who, reports, errors)

    # -- a scan report -------------------------------------------------------------------------
    async def scan(self, request: Request) -> Response:
        """A scan report as the tester's HTML page (``?format=json``: the file itself)."""
        from jinja2 import TemplateError

        from bastion.tester.scan.report import html_from_json

        folder, name = self.folder(), str(request.path_params["name"])
        data = await self.ctx.call(_read_scan, folder, name) if folder is not None else None
        if data is None:
            return render(request, "message.html", 404, principal=principal_of(request), title="No such report",
                          message=f"{name!r} is not a scan report of the reports folder.",
                          link=PREFIX + "/reports", link_text="Back to the reports")
        if request.query_params.get("format") == "json":
            return JSONResponse(data)
        try:
            page = html_from_json(data)
        except (TemplateError, TypeError, AttributeError):
            return render(request, "message.html", 422, principal=principal_of(request), title="Report not shown",
                          message=f"{name} lacks fields this version's report page needs (another version of "
                                  "Bastion wrote it?): open it as JSON.",
                          link=f"{PREFIX}/reports/scans/{name}?format=json", link_text="The JSON report")
        return HTMLResponse(page, headers={"Content-Security-Policy": REPORT_CSP})


def _is_report_name(name: str) -> bool:
    """A plain file name ending in ``.json``: never a path (no traversal out of the folder)."""
    return name.endswith(".json") and "/" not in name and "\\" not in name and not name.startswith(".")


def _list_scans(folder: Path) -> list[ScanEntry]:
    """The folder's JSON files, newest first, each with its target and summary or the reason
    it is not a scan report."""
    try:
        files = [e for e in os.scandir(folder) if e.is_file() and _is_report_name(e.name)]
    except OSError as exc:
        return [ScanEntry(str(folder), "-", problem=f"cannot read the folder: {exc.strerror or exc}")]
    files.sort(key=lambda e: e.stat().st_mtime, reverse=True)
    entries = []
    for entry in files:
        modified = datetime.fromtimestamp(entry.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M:%S")
        data = _read_scan(folder, entry.name)
        if data is None:
            entries.append(ScanEntry(entry.name, modified, problem="not a bastion scan JSON report"))
            continue
        summary = data.get("summary")
        entries.append(ScanEntry(entry.name, modified, str(data.get("target", "-")),
                                 summary if isinstance(summary, dict) else None))
    return entries


def _read_scan(folder: Path, name: str) -> dict[str, Any] | None:
    """The report ``name`` of ``folder``, or ``None``: no such file, too large, not JSON, or
    not written by ``bastion scan``."""
    if not _is_report_name(name):
        return None
    path = folder / name
    try:
        if not path.is_file() or path.stat().st_size > MAX_REPORT_BYTES:
            return None
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    tool = data.get("tool")
    if not isinstance(tool, dict) or tool.get("name") != "bastion scan":
        return None
    report: dict[str, Any] = data
    return report
