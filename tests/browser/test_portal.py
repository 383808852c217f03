"""The developer portal in Chromium, against a real gateway and the demo API: a developer
invited with `bastion consumers invite` sets a password, signs in, creates a key, calls the
API with it, rotates it with a short overlap (both keys work, then the old one is refused),
and revokes the new one. Each page is saved as a screenshot."""

from __future__ import annotations

from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess
from tests.browser.conftest import screenshot
from tests.control.portal_helpers import PASSWORD, READY, invite, portal_config
from tests.control.test_portal import call_api, wait_status

#: Seconds the old key keeps working after the rotation: long enough for the workers' next
#: poll of the store (every second) to see the new key, short enough not to wait long.
OVERLAP = 4


def test_invite_sign_in_create_rotate_revoke(page, demo_api: DemoServer) -> None:  # type: ignore[no-untyped-def]
    """The whole self-service path in a browser: every page renders under its CSP with its
    stylesheet (no console error), fits a phone's width, and the keys it makes behave at the
    gateway: 200 with the new key, both keys during the overlap, 401 for the old key after it
    and for the revoked key."""
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status == 404 else None)
    with GatewayProcess(portal_config(demo_api), ready_timeout=READY) as gw:
        page.goto(invite(gw, "acme", "dev@acme.test"))
        assert page.get_by_role("heading", name="Welcome, dev@acme.test").is_visible()
        screenshot(page, "portal-01-invitation")
        page.get_by_label("New password").fill(PASSWORD)
        page.get_by_label("Repeat it").fill(PASSWORD)
        page.get_by_role("button", name="Set password").click()

        page.wait_for_url("**/portal/login?ready=1")
        assert page.get_by_role("status").inner_text() == "Your password is set: sign in."
        screenshot(page, "portal-02-sign-in")
        page.get_by_label("Login").fill("dev@acme.test")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()

        page.wait_for_url("**/portal/")
        assert page.get_by_role("heading", name="Overview").is_visible()
        header = page.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor")
        assert header == "rgb(11, 110, 79)", "the portal's stylesheet did not apply"
        screenshot(page, "portal-03-overview")

        page.get_by_role("link", name="API keys").first.click()
        page.get_by_role("checkbox", name="orders:read").check()
        page.get_by_role("button", name="Create key").click()
        first = page.locator("#new-key").inner_text().strip()
        assert first.startswith("bst_")
        screenshot(page, "portal-04-key-created")
        assert wait_status(gw, first, 200) == 200

        row = page.locator(f"#key-{first[4:12]}")
        row.get_by_label("Old key keeps working for (seconds)").fill(str(OVERLAP))
        row.get_by_role("button", name="Rotate").click()
        second = page.locator("#new-key").inner_text().strip()
        assert second.startswith("bst_") and second != first
        assert "rotated (replaced by" in page.locator(f"#key-{first[4:12]} .status").inner_text()
        screenshot(page, "portal-05-key-rotated")
        assert wait_status(gw, second, 200) == 200
        assert call_api(gw, first) == 200, "the old key must work during the overlap"
        assert wait_status(gw, first, 401, timeout=OVERLAP + 5) == 401
        assert call_api(gw, second) == 200

        page.locator(f"#key-{second[4:12]}").get_by_role("button", name="Revoke").click()
        assert page.locator(f"#key-{second[4:12]} .status").inner_text() == "revoked"
        screenshot(page, "portal-06-key-revoked")
        assert wait_status(gw, second, 401) == 401

        page.get_by_role("link", name="Documentation").click()
        assert page.get_by_text("/orders").first.is_visible()
        screenshot(page, "portal-07-documentation")
        page.goto(gw.admin_url + "/portal/account")
        assert page.get_by_role("heading", name="Two-factor authentication").is_visible()
        screenshot(page, "portal-08-account")

        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(gw.admin_url + "/portal/keys")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "wider than a phone"
        screenshot(page, "portal-09-keys-on-a-phone")
    assert problems == []
