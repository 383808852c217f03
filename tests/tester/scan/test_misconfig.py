"""API8 misconfiguration checks against the vulnapp: headers, CORS, errors, debug endpoints, TRACE, HTTP."""

from __future__ import annotations

import pytest

from bastion.tester.scan.checks.misconfig import CHECKS, error_signature
from tests.tester.scan.vulnscan import describe, scan_vulnapp, targets

HEADER_KINDS = ("X-Content-Type-Options", "Content-Security-Policy / X-Frame-Options", "Cache-Control",
                "Strict-Transport-Security")


@pytest.mark.parametrize(
    ("flaw", "expected"),
    [
        ("missing_security_headers", {("API8-SECURITY-HEADERS", kind) for kind in HEADER_KINDS}),
        ("cors_reflect", {("API8-CORS-CREDENTIALS", "GET /files")}),
        ("verbose_errors", {("API8-VERBOSE-ERRORS", "POST /auth/login")}),
        ("debug_endpoint", {("API8-DEBUG-ENDPOINT", "GET /debug/vars")}),
        ("trace_enabled", {("API8-TRACE-ENABLED", "TRACE /")}),
    ],
)
def test_each_flaw_is_found_and_nothing_else(flaw: str, expected: set[tuple[str, str]]) -> None:
    """With one API8 switch on (over TLS), the matching check reports exactly its seeded flaw (one finding per
    missing header kind, not per operation) and the other misconfiguration checks report nothing."""
    result = scan_vulnapp({flaw}, CHECKS, tls=True)
    assert targets(result) == expected, describe(result)
    assert all(f.evidence for f in result.findings)


def test_verbose_error_evidence_is_a_traceback() -> None:
    """The verbose-error finding carries the 500 response with the Python traceback as evidence."""
    result = scan_vulnapp({"verbose_errors"}, [c for c in CHECKS if c.info.id == "API8-VERBOSE-ERRORS"], tls=True)
    evidence = result.findings[0].evidence[0]
    assert evidence.status == 500 and "Traceback (most recent call last)" in evidence.text


def test_plain_http_is_one_finding() -> None:
    """Served over plain HTTP with every switch off, the only misconfiguration is plain HTTP itself."""
    result = scan_vulnapp((), CHECKS)
    assert [(f.check.id, f.severity.label) for f in result.findings] == [("API8-PLAIN-HTTP", "medium")], \
        describe(result)


def test_secure_app_has_no_misconfiguration_findings() -> None:
    """With every switch off over TLS (headers and HSTS sent, CORS only for its own front-end, generic errors, no
    debug endpoint, TRACE refused), no misconfiguration is reported."""
    result = scan_vulnapp((), CHECKS, tls=True)
    assert result.findings == [], describe(result)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('Traceback (most recent call last):\n  File "/app/x.py", line 3, in f', "a Python traceback"),
        ("\tat org.example.Foo.bar(Foo.java:42)", "a Java stack trace"),
        ("    at handler (/srv/app/index.js:10:5)", "a Node.js stack trace"),
        ("goroutine 1 [running]:", "a Go panic"),
        ('{"detail": "You have an error in your SQL syntax; check the manual that corresponds to your MySQL"}',
         "a database error"),
        ('{"type":"about:blank","title":"Bad Request","status":400,"detail":"limit must be an integer."}', None),
    ],
)
def test_error_signatures(text: str, kind: str | None) -> None:
    """Stack traces and database errors of common platforms are recognised; a generic problem document is not."""
    assert error_signature(text) == kind
