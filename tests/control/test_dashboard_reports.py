"""The dashboard's reports page over HTTP, against a real gateway: the static audit of the
running configuration and its OpenAPI document (run on demand: a viewer reads it, an
operator re-runs it), and the scan reports a real `bastion scan --format json --output`
wrote into `admin.reports_dir`, listed and shown by the tester's own HTML renderer."""

from __future__ import annotations

from pathlib import Path

import httpx

from bastion.control.accounts.roles import Role
from bastion.control.dashboard.reports import REPORT_CSP
from bastion.demo.app import openapi_path
from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess
from tests.control.dashboard_client import csrf_of, make_admin, sign_in
from tests.tester.scan.test_cli import bastion as scan
from tests.tester.vulnapp.server import serve_vulnapp

HTML = {"Accept": "text/html"}


def _scan_report(folder: Path) -> None:
    """A real scan of the vulnerable app (one check: missing security headers, low findings)."""
    with serve_vulnapp({"missing_security_headers"}) as app:
        done = scan("--spec", str(app.spec_path), "--url", app.base_url, "--check", "API8-SECURITY-HEADERS",
                    "--max-rps", "300", "--format", "json", "--output", str(folder / "headers.json"),
                    "--fail-on", "none")
    assert done.returncode == 0, done.stdout + done.stderr


def test_reports_page_lists_scans_and_runs_the_audit(demo_api: DemoServer, tmp_path: Path) -> None:
    """A viewer sees the folder's scan reports (target and findings; a JSON file that is no
    scan report is listed with that reason), opens one as the tester's HTML page under a
    policy without script, or as its JSON; names outside the folder are 404. The audit runs
    at the first reading and shows its score and findings; a viewer cannot re-run it (403),
    an operator can."""
    reports = tmp_path / "reports"
    reports.mkdir()
    _scan_report(reports)
    (reports / "notes.json").write_text('{"hello": "world"}')
    (tmp_path / "secret.json").write_text('{"tool": {"name": "bastion scan"}}')
    config = {"admin": {"reports_dir": str(reports)},
              "services": [{"name": "books", "upstream": demo_api.url, "openapi": str(openapi_path())}]}
    with GatewayProcess(config) as gw:
        with httpx.Client(base_url=gw.admin_url, follow_redirects=False, timeout=60) as viewer:
            sign_in(viewer, "vic", make_admin(gw, "vic", Role.VIEWER), enrol=False)
            listing = viewer.get("/ui/reports")
            assert listing.status_code == 200, listing.text
            assert 'href="/ui/reports/scans/headers.json"' in listing.text
            assert '<span class="sev sev-low">2 low</span>' in listing.text
            assert "notes.json" in listing.text and "not a bastion scan JSON report" in listing.text

            page = viewer.get("/ui/reports/scans/headers.json")
            assert page.status_code == 200 and "bastion scan report" in page.text
            assert "API8-SECURITY-HEADERS" in page.text
            assert page.headers["content-security-policy"] == REPORT_CSP and "script" not in REPORT_CSP
            as_json = viewer.get("/ui/reports/scans/headers.json?format=json").json()
            assert as_json["tool"]["name"] == "bastion scan" and as_json["summary"]["low"] == 2
            for name in ("notes.json", "..%2Fsecret.json", "missing.json", "headers.txt"):
                assert viewer.get(f"/ui/reports/scans/{name}").status_code == 404, name

            audit = viewer.get("/ui/reports/audit")
            assert audit.status_code == 200 and "/100" in audit.text and "BAST-" in audit.text
            assert "by vic" in audit.text and "Run the audit again" not in audit.text
            refused = viewer.post("/ui/reports/audit", data={"csrf_token": csrf_of(viewer)}, headers=HTML)
            assert refused.status_code == 403 and "needs the role operator" in refused.text
        with httpx.Client(base_url=gw.admin_url, follow_redirects=False, timeout=60) as operator:
            sign_in(operator, "opal", make_admin(gw, "opal", Role.OPERATOR), enrol=False)
            assert "Run the audit again" in operator.get("/ui/reports/audit").text
            rerun = operator.post("/ui/reports/audit", data={"csrf_token": csrf_of(operator)})
            assert rerun.status_code == 303 and rerun.headers["location"] == "/ui/reports/audit"
            assert "by opal" in operator.get("/ui/reports/audit").text
            assert "score" in operator.get("/ui/reports").text


def test_reports_page_without_a_folder(demo_api: DemoServer) -> None:
    """Without admin.reports_dir the page says how to get scan reports onto it, and the audit
    of a configuration without an OpenAPI document says why it has nothing to review."""
    config = {"services": [{"name": "books", "upstream": demo_api.url,
                            "routes": [{"path": "/books", "methods": ["GET"], "public": True}]}]}
    with GatewayProcess(config) as gw, httpx.Client(base_url=gw.admin_url, follow_redirects=False,
                                                   timeout=60) as viewer:
        sign_in(viewer, "vic", make_admin(gw, "vic", Role.VIEWER), enrol=False)
        assert "set <code>admin.reports_dir</code>" in viewer.get("/ui/reports").text
        audit = viewer.get("/ui/reports/audit")
        assert audit.status_code == 200 and "has an OpenAPI document" in audit.text
        assert viewer.get("/ui/reports/scans/x.json").status_code == 404
