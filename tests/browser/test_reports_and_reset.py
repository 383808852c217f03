"""The dashboard's reports page and the portal's password reset in Chromium, against a real
gateway with the demo API: an operator opens the scan report a real `bastion scan` wrote into
admin.reports_dir and re-runs the static audit; then issues a portal password-reset link
from the consumers page, and the developer sets a new password through it and signs in with
it. Each page is saved as a screenshot under test-artifacts/screenshots/."""

from __future__ import annotations

from pathlib import Path

from bastion.control.accounts.roles import Role
from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess
from tests.browser.conftest import screenshot
from tests.control.dashboard_client import NEW_PASSWORD, make_admin
from tests.control.portal_helpers import READY, PortalClient, invite, portal_config
from tests.control.test_dashboard_reports import _scan_report

DEVELOPER_PASSWORD = "a brand new long passphrase"


def test_reports_then_a_portal_password_reset(page, demo_api: DemoServer,  # type: ignore[no-untyped-def]
                                              tmp_path: Path) -> None:
    """Every step checked on the page the browser shows: the report list and a scan report
    (the tester's page, its findings), the audit re-run by the operator, the reset link
    shown once, the developer's new password accepted, and sign-in with it."""
    # Pages that fail to load what they use (the browser's own /favicon.ico aside).
    problems: list[str] = []
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
    reports = tmp_path / "reports"
    reports.mkdir()
    _scan_report(reports)
    config = portal_config(demo_api)
    config["admin"]["reports_dir"] = str(reports)
    with GatewayProcess(config, ready_timeout=READY) as gw:
        PortalClient(gw).accept(invite(gw, "acme", "dev@acme.test"))
        one_time = make_admin(gw, "opal", Role.OPERATOR)
        ui = gw.admin_url + "/ui"

        page.goto(ui + "/login")
        page.get_by_label("Name").fill("opal")
        page.get_by_label("Password").fill(one_time)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        page.get_by_label("New password again").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url(ui + "/")

        page.get_by_role("link", name="Reports").click()
        page.get_by_role("heading", name="Scan and audit reports").wait_for()
        assert page.get_by_role("row", name="headers.json").is_visible()
        screenshot(page, "dashboard-reports")
        page.get_by_role("link", name="headers.json").click()
        page.get_by_role("heading", name="bastion scan report").wait_for()
        assert page.get_by_text("API8-SECURITY-HEADERS").first.is_visible()
        screenshot(page, "dashboard-scan-report")

        page.goto(ui + "/reports/audit")
        page.get_by_role("button", name="Run the audit again").click()
        page.wait_for_url(ui + "/reports/audit")
        assert page.get_by_text("by opal").is_visible()
        assert page.get_by_role("heading", name="/100").first.is_visible()
        screenshot(page, "dashboard-audit-report")

        page.get_by_role("link", name="Consumers & keys").click()
        page.get_by_label("Developer's portal login").fill("dev@acme.test")
        page.get_by_role("button", name="Issue reset link").click()
        page.get_by_role("heading", name="Password-reset link").wait_for()
        link = page.locator("#reset-link").input_value()
        assert link.startswith(gw.admin_url + "/portal/reset/")
        screenshot(page, "dashboard-portal-reset-link")

        page.goto(link)
        page.get_by_role("heading", name="New password for dev@acme.test").wait_for()
        screenshot(page, "portal-reset-password")
        page.get_by_label("New password").fill(DEVELOPER_PASSWORD)
        page.get_by_label("Repeat it").fill(DEVELOPER_PASSWORD)
        page.get_by_role("button", name="Set new password").click()
        page.wait_for_url("**/portal/login?ready=1")
        page.get_by_label("Login").fill("dev@acme.test")
        page.get_by_label("Password", exact=True).fill(DEVELOPER_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/portal/")
        assert page.get_by_role("heading", name="Overview").is_visible()
        assert problems == [], problems
        page.goto(link)
        assert page.get_by_role("heading", name="Reset link not found").is_visible()
