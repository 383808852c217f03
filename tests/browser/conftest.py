"""Browser tests: Playwright driving Debian's Chromium (/usr/bin/chromium), headless, with a
fresh profile per test. Playwright's own browser download is never used. Without Chromium
these tests skip, unless BASTION_REQUIRE_CHROMIUM=1 (CI) makes that a failure.

Screenshots go to ``test-artifacts/screenshots/`` (git-ignored) through :func:`screenshot`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
#: Without the background-networking flags, Chromium's attempts to reach Google's services on a
#: closed network stall it; QUIC and the GPU are of no use headless on loopback.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def _require_chromium() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("BASTION_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium) and BASTION_REQUIRE_CHROMIUM=1")
        pytest.skip(f"{CHROMIUM} is not installed")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium per test module. Not per session: Playwright's sync API keeps its
    event loop running in this thread while it is open, and the tests after the browser tests
    that call asyncio.run() would fail."""
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    """A page in a new browser context (its own cookies and storage: a fresh user-data state)."""
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page: object, name: str) -> Path:
    """Save a full-page screenshot as a test artifact; returns its path."""
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".png")
    page.screenshot(path=str(path), full_page=True)
    return path
