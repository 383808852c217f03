"""API5 checks against the vulnapp: admin functions called by a normal user."""

from __future__ import annotations

from pathlib import Path

from bastion.tester.audit import load_spec
from bastion.tester.scan.checks.bfla import CHECKS, is_admin_operation
from tests.tester.scan.vulnscan import describe, scan_vulnapp
from tests.tester.vulnapp.app import SPEC_PATH


def test_bfla_is_found_on_read_and_delete() -> None:
    """With `bfla`, alice lists users (200) and reaches the admin's DELETE handler (the admin's 404 for a
    nonexistent user instead of 403)."""
    result = scan_vulnapp({"bfla"}, CHECKS, users=1, admin=True, allow_destructive=True)
    assert {(f.check.id, f.target) for f in result.findings} == {
        ("API5-BFLA", "GET /admin/users"),
        ("API5-BFLA", "DELETE /admin/users/{userId}"),
    }, describe(result)
    delete = next(f for f in result.findings if f.target.startswith("DELETE"))
    admin_answer, user_answer = delete.evidence
    assert (admin_answer.identity, user_answer.identity) == ("root", "alice")
    assert admin_answer.url.endswith("/admin/users/987654321")


def test_by_default_only_reads_are_tried() -> None:
    """Without --allow-destructive the DELETE is not sent (skipped with the reason); the read is still found."""
    result = scan_vulnapp({"bfla"}, CHECKS, users=1, admin=True)
    assert {(f.check.id, f.target) for f in result.findings} == {("API5-BFLA", "GET /admin/users")}
    assert any("--allow-destructive" in s.reason for s in result.skips)
    assert all(e.method == "GET" for f in result.findings for e in f.evidence)


def test_secure_app_has_no_bfla_findings() -> None:
    """With every switch off (over TLS, destructive checks on), no API5 check reports anything."""
    result = scan_vulnapp((), CHECKS, tls=True, users=2, admin=True, allow_destructive=True)
    assert result.findings == [], describe(result)


def test_admin_operations_come_from_the_spec() -> None:
    """Admin-looking operations: path segments, and nothing else in the vulnapp's document."""
    spec = load_spec(Path(SPEC_PATH))
    assert sorted(op.label for op in spec.operations if is_admin_operation(op)) == [
        "DELETE /admin/users/{userId}", "GET /admin/users"]


def test_method_switch_on_an_admin_path(tmp_path: Path) -> None:
    """An admin path declaring only POST that answers GET to a normal user is a method-switch finding (no
    vulnapp switch covers it); the declared POST is not sent without --allow-destructive."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from bastion.tester.scan.engine import run_scan
    from bastion.tester.scan.identities import IdentityConfig
    from bastion.tester.scan.interface import ScanOptions
    from tests.tester.scan.servers import serve

    async def stats(request: Request) -> Response:
        if request.method == "POST":
            return JSONResponse({"detail": "admins only"}, 403)
        return JSONResponse({"users": 3})

    spec = tmp_path / "openapi.yaml"
    spec.write_text(
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\nsecurity: [{bearer: []}]\n"
        "components: {securitySchemes: {bearer: {type: http, scheme: bearer}}}\n"
        "paths:\n  /admin/stats:\n    post:\n      responses: {'200': {description: ok}}\n", encoding="utf-8")
    with serve(Starlette(routes=[Route("/admin/stats", stats, methods=["GET", "POST"])])) as origin:
        result = run_scan(spec, ScanOptions(base_url=origin, max_rps=300),
                          [IdentityConfig("alice", headers={"Authorization": "Bearer t"})], checks=CHECKS)
    assert {(f.check.id, f.target) for f in result.findings} == {("API5-METHOD-SWITCH", "GET /admin/stats")}, (
        describe(result))
    assert any("collection" in s.reason for s in result.skips)
