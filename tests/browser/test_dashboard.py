"""The dashboard in a real browser (Debian's Chromium under Playwright) against a real
gateway in front of the demo API, with the audit log and the detectors on: an admin's first
sign-in (one-time password, new password, TOTP enrolment), a consumer and an API key made in
the UI and used by an HTTP client, that request in the live feed, an injection on the blocked
page with its reason, a scanner's alert acknowledged, every page at a phone's width, and
signing out. Every page is saved as
a screenshot under test-artifacts/screenshots/."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pyotp

from bastion.control.accounts.roles import Role
from bastion.demo.app import openapi_path
from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess
from tests.browser.conftest import screenshot
from tests.control.dashboard_client import NEW_PASSWORD, make_admin

#: How long the browser waits for a record to travel gateway -> audit writer -> store -> page.
ARRIVAL = 20.0


def _config(demo_api: DemoServer) -> dict[str, Any]:
    return {
        "audit": {"enabled": True, "flush_interval": 0.2},
        "detectors": {"enabled": True, "scanner": {"probe_threshold": 2}},
        "services": [{"name": "books", "upstream": demo_api.url, "openapi": str(openapi_path()),
                      "policies": {"detection": {"paranoia": 1}}}],
    }


def _reload_until(page: Any, found: Callable[[], bool], what: str) -> None:
    """Reload a server-rendered page until ``found`` (records reach the store in batches)."""
    deadline = time.monotonic() + ARRIVAL
    while not found():
        assert time.monotonic() < deadline, f"{what} did not appear within {ARRIVAL}s"
        time.sleep(0.3)
        page.reload()


def _until_allowed(url: str, key: str) -> httpx.Response:
    """GET ``url`` with ``key`` until the workers know the new key (they poll the store)."""
    deadline = time.monotonic() + ARRIVAL
    while True:
        answer = httpx.get(url, headers={"X-API-Key": key}, timeout=10)
        if answer.status_code != 401 or time.monotonic() > deadline:
            return answer
        time.sleep(0.3)


def test_dashboard_end_to_end(page, demo_api: DemoServer) -> None:  # type: ignore[no-untyped-def]
    """The whole tour, each step checked on the page the browser shows."""
    # A loaded machine takes a while to compile detection and open the store.
    with GatewayProcess(_config(demo_api), ready_timeout=90) as gw:
        one_time = make_admin(gw, "alice", Role.ADMIN)
        ui = gw.admin_url + "/ui"

        # Sign-in: the one-time password, a new password, then TOTP enrolment.
        page.goto(ui + "/")
        assert page.url == ui + "/login"
        screenshot(page, "dashboard-login")
        page.get_by_label("Name").fill("alice")
        page.get_by_label("Password").fill(one_time)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Choose a new password").wait_for()
        screenshot(page, "dashboard-new-password")
        page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        page.get_by_label("New password again").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("heading", name="Set up your second factor").wait_for()
        secret = page.locator("#totp-secret").inner_text()
        assert page.locator("#totp-uri").inner_text().startswith("otpauth://totp/")
        screenshot(page, "dashboard-totp-enrolment")
        page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
        page.get_by_role("button", name="Continue").click()
        page.get_by_role("heading", name="Overview").wait_for()
        assert page.url == ui + "/"
        assert "alice (admin)" in page.locator("header").inner_text()
        screenshot(page, "dashboard-overview-empty")

        # A consumer and its key, made in the UI; the key is shown once.
        page.get_by_role("link", name="Consumers & keys").click()
        page.get_by_label("Name", exact=True).fill("shop")
        page.get_by_label("Roles (comma-separated)").fill("user")
        page.get_by_role("button", name="Create consumer").click()
        page.get_by_role("rowheader", name="shop").wait_for()
        page.get_by_label("Consumer", exact=True).select_option("shop")
        page.get_by_role("button", name="Create key").click()
        page.get_by_role("heading", name="API key created").wait_for()
        key = page.get_by_role("textbox", name="API key").input_value()
        assert key.startswith("bst_")
        screenshot(page, "dashboard-key-created")

        # The live feed shows the key's request as it happens.
        page.goto(ui + "/feed?consumer=shop")
        page.get_by_text("Live: new requests appear at the top.").wait_for()
        assert _until_allowed(gw.url + "/orders", key).status_code == 200
        row = page.locator("#feed tbody tr", has_text="/orders")
        row.first.wait_for(timeout=ARRIVAL * 1000)
        assert "shop" in row.first.inner_text() and "allowed" in row.first.inner_text()
        screenshot(page, "dashboard-live-feed")

        # An injection is blocked, and shown with the stage and rule that blocked it.
        blocked = httpx.get(gw.url + "/books", params={"q": "1' OR 1=1--"}, timeout=10)
        assert blocked.status_code == 403
        page.goto(ui + "/blocked")
        _reload_until(page, lambda: page.locator("table.blocked tbody tr", has_text="/books").count() > 0,
                      "the blocked injection")
        blocked_row = page.locator("table.blocked tbody tr", has_text="/books").first.inner_text()
        assert "detection" in blocked_row and "sqli" in blocked_row and "403" in blocked_row
        screenshot(page, "dashboard-blocked")

        # A scanner's probes raise an alert, which an operator (here an admin) acknowledges.
        for probe in ("/.env", "/.git/config"):
            assert httpx.get(gw.url + probe, timeout=10).status_code == 404
        page.goto(ui + "/alerts")
        _reload_until(page, lambda: page.locator("tr.alert-row", has_text="scanner").count() > 0, "the scanner alert")
        alert = page.locator("tr.alert-row", has_text="scanner").first
        assert alert.get_attribute("data-status") == "open"
        screenshot(page, "dashboard-alerts")
        alert.get_by_role("button", name="Acknowledge").click()
        acknowledged = page.locator("tr.alert-row", has_text="scanner").first
        assert acknowledged.get_attribute("data-status") == "acknowledged"
        assert "by alice" in acknowledged.locator("td.status").inner_text()

        # The other pages, with data in them.
        page.get_by_role("link", name="Routes").click()
        assert page.locator("table.routes", has_text="/orders").count() == 1
        assert "api key" in page.locator("table.routes tr", has_text="/orders").first.inner_text().lower()
        screenshot(page, "dashboard-routes")
        # The scanner's probes are undeclared endpoints: discovery lists them.
        page.get_by_role("link", name="Discovery").click()
        assert page.locator("table.discovery-undeclared tr", has_text="GET /.git/config").count() == 1
        screenshot(page, "dashboard-discovery")
        page.get_by_role("link", name="Overview").click()
        assert int(page.locator("#total-requests").inner_text()) >= 4
        assert page.locator("figure.chart svg polyline").count() >= 6
        screenshot(page, "dashboard-overview")

        # On a phone's width no page is wider than the screen (wide tables scroll by themselves).
        page.set_viewport_size({"width": 390, "height": 844})
        for name in ("", "feed", "blocked", "alerts", "consumers", "routes"):
            page.goto(f"{ui}/{name}")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
            screenshot(page, f"dashboard-phone-{name or 'overview'}")
        page.set_viewport_size({"width": 1280, "height": 900})

        # Signing out ends the session.
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("heading", name="Sign in").wait_for()
        page.goto(ui + "/consumers")
        assert page.url == ui + "/login"
