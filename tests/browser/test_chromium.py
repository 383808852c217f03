"""The browser test harness itself: Debian's Chromium starts headless under Playwright and
renders a page served on loopback by Bastion's admin listener."""

from __future__ import annotations

from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess
from tests.browser.conftest import screenshot


def test_chromium_reaches_the_admin_listener(page, demo_api: DemoServer) -> None:  # type: ignore[no-untyped-def]
    """A page load of /version on a real gateway's admin port shows Bastion's JSON."""
    cfg = {"services": [{"name": "books", "upstream": demo_api.url,
                         "routes": [{"path": "/books", "methods": ["GET"], "public": True}]}]}
    with GatewayProcess(cfg) as gw:
        response = page.goto(gw.admin_url + "/version")
        assert response is not None and response.status == 200
        assert '"name":"bastion"' in page.content().replace(" ", "")
        assert screenshot(page, "harness-version").stat().st_size > 0
