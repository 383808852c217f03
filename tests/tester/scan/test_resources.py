"""API4 checks against the vulnapp: rate limits, page sizes, body sizes, regex DoS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.tester.scan.checks.resources import CHECKS, oversized_count, redos_inputs
from bastion.tester.scan.engine import run_scan
from bastion.tester.scan.interface import ScanOptions
from bastion.tester.scan.registry import BY_ID
from tests.tester.scan.servers import serve
from tests.tester.scan.vulnscan import describe, scan_vulnapp, targets


@pytest.mark.parametrize(
    ("flaw", "expected"),
    [
        ("no_rate_limit", {("API4-NO-RATE-LIMIT", "GET /files")}),
        ("unbounded_page_size", {("API4-UNBOUNDED-PAGE-SIZE", "GET /products")}),
        ("large_payload", {("API4-LARGE-PAYLOAD", "POST /orders")}),
        ("unbounded_arrays",
         {("API4-UNBOUNDED-ARRAY", "POST /orders"), ("API4-UNBOUNDED-ARRAY", "PUT /orders/{orderId}")}),
    ],
)
def test_each_flaw_is_found_and_nothing_else(flaw: str, expected: set[tuple[str, str]]) -> None:
    """With one API4 switch on, the matching check reports exactly its seeded flaw and the other API4 checks
    (which run too) report nothing."""
    result = scan_vulnapp({flaw}, CHECKS)
    assert targets(result) == expected, describe(result)
    assert all(f.evidence for f in result.findings)


def test_page_size_states_the_declared_maximum() -> None:
    """The page-size finding names the value sent (ten times the declared maximum) and the maximum."""
    result = scan_vulnapp({"unbounded_page_size"}, [c for c in CHECKS if c.info.id == "API4-UNBOUNDED-PAGE-SIZE"])
    assert "`limit=1000` (above its declared maximum 100)" in result.findings[0].message


@pytest.mark.parametrize("on", [True, False], ids=["on", "off"])
def test_burst_outruns_a_low_max_rps(on: bool) -> None:
    """With --max-rps 4 a paced burst of 61 requests would take 15 s and never exceed the app's 50 requests per
    10 s; the burst goes out at full speed instead, so the secure app's limit answers 429 (no finding) and the
    flawed app's missing limit is found. The report notes the burst, and the scan stays far shorter than 15 s."""
    result = scan_vulnapp({"no_rate_limit"} if on else (), [c for c in CHECKS if c.info.id == "API4-NO-RATE-LIMIT"],
                          max_rps=4.0)
    assert targets(result) == ({("API4-NO-RATE-LIMIT", "GET /files")} if on else set()), describe(result)
    assert result.skips == [], describe(result)
    # Other notes (what the scan left on the target) may accompany it; the burst note is one and says its size.
    bursts = [n for n in result.notes if n.startswith("API4-NO-RATE-LIMIT:")]
    assert len(bursts) == 1 and bursts[0].startswith("API4-NO-RATE-LIMIT: burst of "), result.notes
    assert bursts[0].endswith("requests at full speed (outside --max-rps 4)")
    burst = int(bursts[0].split("burst of ")[1].split()[0])
    assert (burst == 60) if on else (50 <= burst <= 60), result.notes
    if on:
        assert "a burst of 60 at full speed" in result.findings[0].message
    assert result.duration < 10.0


def test_array_sizes_follow_max_items() -> None:
    """Oversized arrays are ten times maxItems (at least maxItems + 10), or 10,000 items without a bound."""
    assert oversized_count({"type": "array", "maxItems": 20}) == 200
    assert oversized_count({"type": "array", "maxItems": 0}) == 10
    assert oversized_count({"type": "array"}) == 10_000


def test_secure_app_has_no_resource_findings() -> None:
    """With every switch off (over TLS), the burst meets a 429, page sizes above 100 get 400, 1 MiB bodies get
    413, 200 order items get 400 and the patterned parameter does not slow down: no finding."""
    result = scan_vulnapp((), CHECKS, tls=True)
    assert result.findings == [], describe(result)


def test_redos_inputs_follow_the_pattern() -> None:
    """ReDoS inputs repeat a character of the pattern's first atoms and end with one that breaks the match."""
    assert redos_inputs(r"^(a+)+$", 5) == ["aaaaa!"]
    assert redos_inputs(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,59}\.txt$", 3) == ["AAA!"]
    assert redos_inputs(r"^(\d+)*x$", 2) == ["11!", "xx!"]


def test_a_burst_too_slow_to_meet_a_per_window_limit_is_a_skip_not_a_finding(tmp_path: Path) -> None:
    """An API whose answers take 0.5 s each cannot be hit faster than 20 requests/s by 10 concurrent
    workers, below MIN_BURST_RATE: a limit of 50 per 2 s would never trip, so the lack of 429 is a skip that
    says why, not a "no rate limit" finding (before, a busy machine turned the library's secure twin's limit
    into a false finding this way)."""

    async def things(request: Request) -> Response:
        await asyncio.sleep(0.5)
        return JSONResponse([{"id": 1}])

    spec = tmp_path / "openapi.yaml"
    spec.write_text("openapi: 3.1.0\ninfo: {title: t, version: '1'}\n"
                    "paths:\n  /things:\n    get:\n      security: []\n"
                    "      responses: {'200': {description: ok}}\n", encoding="utf-8")
    with serve(Starlette(routes=[Route("/things", things)])) as origin:
        result = run_scan(spec, ScanOptions(base_url=origin, max_rps=300), [], checks=[BY_ID["API4-NO-RATE-LIMIT"]])
    assert result.findings == []
    [skipped] = result.skips
    assert skipped.reason.startswith("the burst reached only ") and "proves nothing" in skipped.reason
