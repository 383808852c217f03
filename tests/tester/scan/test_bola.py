"""API1 checks against the vulnapp: another user's orders read, modified, deleted and guessed."""

from __future__ import annotations

from bastion.tester.scan.checks.bola import CHECKS
from tests.tester.scan.vulnscan import describe, found, scan_vulnapp


def test_bola_is_found_by_every_check() -> None:
    """With `bola`, bob reads, modifies and deletes alice's orders and alice reaches orders next to hers."""
    result = scan_vulnapp({"bola"}, CHECKS, users=2, admin=True, allow_destructive=True)
    assert {(f.check.id, f.target) for f in result.findings} == {
        ("API1-BOLA-READ", "GET /orders/{orderId}"),
        ("API1-BOLA-GUESS", "GET /orders/{orderId}"),
        ("API1-BOLA-WRITE", "PUT /orders/{orderId}"),
        ("API1-BOLA-DELETE", "DELETE /orders/{orderId}"),
    }, describe(result)
    read = found(result, "API1-BOLA-READ")[0]
    mine, theirs = read.evidence
    assert (mine.identity, theirs.identity) == ("alice", "bob") and mine.url == theirs.url
    delete = found(result, "API1-BOLA-DELETE")[0]
    assert "A now gets 404" in delete.message


def test_without_allow_destructive_nothing_is_changed() -> None:
    """By default the modifying and deleting checks are skipped with the reason and no PUT/DELETE is sent."""
    result = scan_vulnapp({"bola"}, CHECKS, users=2)
    assert {f.check.id for f in result.findings} == {"API1-BOLA-READ", "API1-BOLA-GUESS"}, describe(result)
    skipped = {s.check.id: s.reason for s in result.skips}
    assert "--allow-destructive" in skipped["API1-BOLA-WRITE"]
    assert "--allow-destructive" in skipped["API1-BOLA-DELETE"]
    assert all(e.method == "GET" for f in result.findings for e in f.evidence)


def test_cross_user_checks_need_two_users() -> None:
    """With a single user, the cross-user checks are skipped (needs 2 users); ID guessing still runs."""
    result = scan_vulnapp((), CHECKS, users=1)
    skipped = {s.check.id: s.reason for s in result.skips}
    assert "needs 2 user identities" in skipped["API1-BOLA-READ"]
    assert "API1-BOLA-GUESS" not in skipped
    assert result.findings == []


def test_secure_app_has_no_bola_findings() -> None:
    """With every switch off (over TLS, destructive checks on), no API1 check reports anything."""
    result = scan_vulnapp((), CHECKS, tls=True, users=2, admin=True, allow_destructive=True)
    assert result.findings == [], describe(result)
