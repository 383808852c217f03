"""API7 check against the vulnapp: URL inputs fetched server-side."""

from __future__ import annotations

import pytest

from bastion.tester.scan.checks.ssrf import CHECKS, loopback_variants, url_like
from tests.tester.scan.vulnscan import describe, scan_vulnapp, targets


def test_ssrf_is_found() -> None:
    """With `ssrf`, the webhook test operation fetches the scanner's canary URL given in its `format: uri` body
    field, and that is the one finding."""
    result = scan_vulnapp({"ssrf"}, CHECKS)
    assert targets(result) == {("API7-SSRF", "POST /webhooks/test")}, describe(result)
    assert "body `url`" in result.findings[0].message


def test_secure_app_refuses_every_loopback_spelling() -> None:
    """With every switch off (over TLS), the API refuses the canary URL and its decimal, hex, short and
    `localhost` spellings: no callback, no finding."""
    result = scan_vulnapp((), CHECKS, tls=True)
    assert result.findings == [], describe(result)


def test_loopback_variants() -> None:
    """The canary URL is tried as is and with the loopback address spelled four other ways, port and path kept."""
    assert loopback_variants("http://127.0.0.1:8123/c/tok") == [
        "http://127.0.0.1:8123/c/tok", "http://2130706433:8123/c/tok", "http://0x7f000001:8123/c/tok",
        "http://127.1:8123/c/tok", "http://localhost:8123/c/tok",
    ]


@pytest.mark.parametrize(
    ("name", "schema", "expected"),
    [
        ("target", {"type": "string", "format": "uri"}, True),
        ("anything", {"type": "string", "format": "url"}, True),
        ("callbackUrl", {"type": "string"}, True),
        ("webhook", None, True),
        ("avatar_url", {"type": "string"}, True),
        ("url", {"type": "integer"}, False),
        ("url", {"type": "string", "enum": ["a", "b"]}, False),
        ("curl_version", {"type": "string"}, False),
        ("name", {"type": "string"}, False),
    ],
)
def test_url_inputs_are_recognised(name: str, schema: dict[str, object] | None, expected: bool) -> None:
    """URL inputs are found by `format` or by name, never for non-string or enumerated values."""
    assert url_like(name, schema) is expected
