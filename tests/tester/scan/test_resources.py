"""API4 checks against the vulnapp: rate limits, page sizes, body sizes, regex DoS."""

from __future__ import annotations

import pytest

from bastion.tester.scan.checks.resources import CHECKS, redos_inputs
from tests.tester.scan.vulnscan import describe, scan_vulnapp, targets


@pytest.mark.parametrize(
    ("flaw", "expected"),
    [
        ("no_rate_limit", {("API4-NO-RATE-LIMIT", "GET /files")}),
        ("unbounded_page_size", {("API4-UNBOUNDED-PAGE-SIZE", "GET /products")}),
        ("large_payload", {("API4-LARGE-PAYLOAD", "POST /orders")}),
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


def test_secure_app_has_no_resource_findings() -> None:
    """With every switch off (over TLS), the burst meets a 429, page sizes above 100 get 400, 1 MiB bodies get
    413 and the patterned parameter does not slow down: no finding."""
    result = scan_vulnapp((), CHECKS, tls=True)
    assert result.findings == [], describe(result)


def test_redos_inputs_follow_the_pattern() -> None:
    """ReDoS inputs repeat a character of the pattern's first atoms and end with one that breaks the match."""
    assert redos_inputs(r"^(a+)+$", 5) == ["aaaaa!"]
    assert redos_inputs(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,59}\.txt$", 3) == ["AAA!"]
    assert redos_inputs(r"^(\d+)*x$", 2) == ["11!", "xx!"]
