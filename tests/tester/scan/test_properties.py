"""API3 checks against the vulnapp: excessive data exposure, sensitive data, mass assignment."""

from __future__ import annotations

import httpx
import pytest

from bastion.tester.scan.checks.properties import CHECKS, luhn, sensitive_value, snake
from tests.tester.scan.vulnscan import describe, scan_app, scan_vulnapp, targets
from tests.tester.vulnapp.server import serve_vulnapp


def test_excessive_data_is_found_and_nothing_else() -> None:
    """With `excessive_data`, the undeclared `password_hash`/`api_token` fields of both user read operations are
    reported as undeclared and as sensitive data, and mass assignment reports nothing."""
    result = scan_vulnapp({"excessive_data"}, CHECKS)
    expected = {(check, target) for check in ("API3-UNDECLARED-FIELDS", "API3-SENSITIVE-DATA")
                for target in ("GET /users/me", "GET /users/{userId}")}
    assert targets(result) == expected, describe(result)
    sensitive = next(f for f in result.findings if f.check.id == "API3-SENSITIVE-DATA")
    assert "password_hash`: a password hash" in sensitive.message
    assert "api_token" in sensitive.message
    assert sensitive.evidence and sensitive.evidence[0].status == 200


def test_mass_assignment_is_found_and_the_role_restored() -> None:
    """With `mass_assignment`, PATCH /users/me with `role: admin` (readOnly in the schema) takes effect and is
    reported; the scan writes the old role back afterwards."""
    with serve_vulnapp({"mass_assignment"}) as app:
        result = scan_app(app, CHECKS)
        assert targets(result) == {("API3-MASS-ASSIGNMENT", "PATCH /users/me")}, describe(result)
        finding = result.findings[0]
        assert "`role` set to 'admin'" in finding.message and "'user'" in finding.message
        assert [ex.method for ex in finding.evidence] == ["PATCH", "GET"]
        token = httpx.post(f"{app.base_url}/auth/login",
                           json={"username": "alice", "password": "alice-pass-8f3k"}).json()["access_token"]
        me = httpx.get(f"{app.base_url}/users/me", headers={"Authorization": f"Bearer {token}"}).json()
        assert me["role"] == "user"


def test_secure_app_has_no_property_findings() -> None:
    """With every switch off (over TLS), none of the API3 checks reports anything."""
    result = scan_vulnapp((), CHECKS, tls=True, users=2)
    assert result.findings == [], describe(result)


@pytest.mark.parametrize(
    ("name", "value", "sensitive"),
    [
        ("password_hash", "$2b$12$" + "a" * 53, True),
        ("note", "4111 1111 1111 1111", True),
        ("note", "4111 1111 1111 1112", False),
        ("order_ref", "1234567890123", False),
        ("access_token", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2ln", True),
        ("access_token", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.own", False),
        ("checksum", "d41d8cd98f00b204e9800998ecf8427e", False),
        ("secret_hash", "d41d8cd98f00b204e9800998ecf8427e", True),
        ("key", "-----BEGIN RSA PRIVATE KEY-----\nMIIE...", True),
    ],
)
def test_sensitive_value_patterns(name: str, value: str, sensitive: bool) -> None:
    """Hashes, card numbers (Luhn-valid, brand prefix), keys and foreign JWTs are sensitive; the caller's own
    token, plain IDs and digests under neutral names are not."""
    own = frozenset({"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.own"})
    assert (sensitive_value(name, value, own) is not None) is sensitive


def test_helpers() -> None:
    """Names are compared in snake case; the Luhn check is the standard one."""
    assert snake("isAdmin") == "is_admin" and snake("API-Key") == "api_key"
    assert luhn("4111111111111111") and not luhn("4111111111111112")
