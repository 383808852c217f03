"""API2 checks against the vulnapp: each seeded authentication flaw is found, alone, and nothing else is."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.tester.scan.checks.authn import CHECKS, find_login
from bastion.tester.scan.jwt import candidates, crack, decode, encode, wordlist
from tests.tester.scan.vulnscan import describe, found, scan_vulnapp

#: Each switch (or set of switches) and exactly the API2 checks it must trigger.
CASES: list[tuple[set[str], set[tuple[str, str]]]] = [
    ({"missing_auth"}, {("API2-NO-AUTH", "GET /reports")}),
    ({"jwt_alg_none"}, {("API2-JWT-NONE", "GET /files")}),
    ({"jwt_signature_ignored"}, {("API2-JWT-WRONG-KEY", "GET /files"), ("API2-JWT-ALG-SWAP", "GET /files")}),
    ({"jwt_weak_secret"}, {("API2-JWT-WEAK-SECRET", "GET /files")}),
    ({"jwt_weak_secret", "jwt_expiry_ignored"},
     {("API2-JWT-WEAK-SECRET", "GET /files"), ("API2-JWT-EXPIRED", "GET /files")}),
    ({"token_in_url"}, {("API2-TOKEN-IN-URL", "GET /files")}),
    ({"user_enumeration"}, {("API2-USER-ENUM", "POST /auth/login")}),
    ({"login_no_rate_limit"}, {("API2-LOGIN-NO-LIMIT", "POST /auth/login")}),
    ({"password_change_no_old"}, {("API2-PASSWORD-NO-OLD", "PUT /users/me/password")}),
    ({"password_change_other_user"}, {("API2-PASSWORD-OTHER-USER", "PUT /users/{userId}/password")}),
    ({"default_credentials"}, {("API2-DEFAULT-CREDS", "POST /auth/login")}),
]


@pytest.mark.parametrize(("flaws", "expected"), CASES, ids=["+".join(sorted(f)) for f, _ in CASES])
def test_each_flaw_is_found_and_nothing_else(flaws: set[str], expected: set[tuple[str, str]]) -> None:
    """With only these switches on, the API2 checks find exactly the seeded flaws (target included; a finding
    folded into another as a proof of the same root cause counts as found)."""
    result = scan_vulnapp(flaws, CHECKS, users=2, admin=True, allow_destructive=True)
    assert {(f.check.id, f.target) for f in result.every_finding} == expected, describe(result)
    assert all(f.evidence for f in result.every_finding)


def test_unverified_signatures_are_one_finding_with_its_proofs() -> None:
    """A token accepted with any signature is one flaw: one API2-JWT-WRONG-KEY finding that names its root cause
    and carries the algorithm-swap finding (with its own evidence) as a proof, not two findings to fix."""
    result = scan_vulnapp({"jwt_signature_ignored"}, CHECKS, users=2, admin=True, allow_destructive=True)
    assert [(f.check.id, f.target) for f in result.findings] == [("API2-JWT-WRONG-KEY", "GET /files")], \
        describe(result)
    root = result.findings[0]
    assert [(p.check.id, p.target) for p in root.proofs] == [("API2-JWT-ALG-SWAP", "GET /files")]
    assert root.proofs[0].evidence and root.proofs[0].evidence != root.evidence
    assert "Root cause: the API does not verify token signatures at all" in root.message
    assert "API2-JWT-ALG-SWAP on GET /files" in root.message


def test_secure_app_has_no_authentication_findings() -> None:
    """With every switch off (over TLS, destructive checks on), no API2 check reports anything; the expiry check
    says why it could not conclude (the secret is not weak)."""
    result = scan_vulnapp((), CHECKS, tls=True, users=2, admin=True, allow_destructive=True)
    assert result.findings == [], describe(result)
    reasons = {s.check.id: s.reason for s in result.skips}
    assert "expired_token" in reasons["API2-JWT-EXPIRED"]


def test_evidence_of_forged_tokens() -> None:
    """The alg-none finding carries the unsigned token it sent; the cracked secret is masked in the message; the
    password change restores the password (the user can still log in, so later logins work)."""
    result = scan_vulnapp({"jwt_alg_none", "jwt_weak_secret", "password_change_no_old"}, CHECKS, users=2,
                          allow_destructive=True)
    none = found(result, "API2-JWT-NONE")[0]
    sent = dict(none.evidence[1].request_headers)["Authorization"]
    assert sent.startswith("Bearer ") and sent.endswith(".")
    assert decode(sent[7:]) is not None and decode(sent[7:]).alg.lower() == "none"  # type: ignore[union-attr]
    weak = found(result, "API2-JWT-WEAK-SECRET")[0]
    assert "'ch******'" in weak.message and "changeme" not in weak.message
    change = found(result, "API2-PASSWORD-NO-OLD")[0]
    assert "could not be restored" not in change.message


def test_password_change_for_another_user_is_proven_and_undone() -> None:
    """Bob sets alice's password by her ID (found from GET /users/me) with his own as the current one; the finding
    shows the change and alice's login with the new password, and after the scan alice logs in with her original
    password again (the check set it back)."""
    import httpx

    from tests.tester.scan.vulnscan import scan_app
    from tests.tester.vulnapp.server import serve_vulnapp

    check = [c for c in CHECKS if c.info.id == "API2-PASSWORD-OTHER-USER"]
    with serve_vulnapp({"password_change_other_user"}) as app:
        result = scan_app(app, check, users=2, allow_destructive=True)
        with httpx.Client(base_url=app.base_url, trust_env=False) as client:
            again = client.post("/auth/login", json={"username": "alice", "password": "alice-pass-8f3k"})
    assert again.status_code == 200
    [finding] = found(result, "API2-PASSWORD-OTHER-USER")
    assert "bob set alice's password through PUT /users/{userId}/password (`userId`=1, 204)" in finding.message
    assert "password was set back" in finding.message and "RESTORE FAILED" not in finding.message
    change, proof = finding.evidence
    assert change.url.endswith("/v2/users/1/password") and change.identity == "bob"
    assert proof.status == 200


def test_password_change_for_another_user_needs_two_users_and_destructive() -> None:
    """Without --allow-destructive, or with a single user, the cross-user password change is skipped with the
    reason, and nothing is sent to the password operation."""
    check = [c for c in CHECKS if c.info.id == "API2-PASSWORD-OTHER-USER"]
    result = scan_vulnapp({"password_change_other_user"}, check, users=2)
    assert result.findings == [] and "--allow-destructive" in result.skips[0].reason
    result = scan_vulnapp({"password_change_other_user"}, check, users=1, allow_destructive=True)
    assert result.findings == [] and "needs 2 user identities" in result.skips[0].reason


def test_jwt_helpers_crack_and_forge() -> None:
    """The wordlist has the well-known secrets; a token signed with one is cracked, one with a random key is not;
    the candidates go on with every number of up to six digits, leading zeros included."""
    words = wordlist()
    assert {"secret", "changeme", "password", "123456", "your-256-bit-secret", "random"} <= set(words)
    assert 200 <= len(words) <= 400 and len(set(words)) == len(words)
    numeric = decode(encode({"alg": "HS256", "typ": "JWT"}, {"sub": "1"}, b"0042"))
    assert numeric is not None and crack(numeric, candidates()) == "0042"
    token = decode(encode({"alg": "HS256", "typ": "JWT"}, {"sub": "1"}, b"your-256-bit-secret"))
    assert token is not None and crack(token, words) == "your-256-bit-secret"
    other = decode(encode({"alg": "HS256"}, {"sub": "1"}, b"k" * 32))
    assert other is not None and crack(other, words) is None
    assert decode("not.a.jwt") is None


def test_login_operation_is_found_from_the_spec() -> None:
    """Without any login identity, the login operation is the public POST with user name and password fields."""
    from bastion.tester.audit import load_spec
    from bastion.tester.scan.client import ScanClient
    from bastion.tester.scan.engine import Scan
    from bastion.tester.scan.interface import ScanOptions
    from tests.tester.vulnapp.app import SPEC_PATH

    options = ScanOptions(base_url="http://127.0.0.1:9/v2")
    scan = Scan(load_spec(Path(SPEC_PATH)), options, ScanClient(options), [], None)
    login = find_login(scan)
    assert login is not None
    assert (login.op.label, login.user_field, login.password_field) == ("POST /auth/login", "username", "password")


def test_any_bearer_accepted_is_an_invalid_token_finding(tmp_path: Path) -> None:
    """An API that checks only that some bearer token is present (no flaw switch in the vulnapp) is reported by
    API2-INVALID-TOKEN, and not as missing authentication."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from bastion.tester.scan.engine import run_scan
    from bastion.tester.scan.identities import IdentityConfig
    from bastion.tester.scan.interface import ScanOptions
    from tests.tester.scan.servers import serve

    async def things(request: Request) -> Response:
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return JSONResponse({"detail": "no"}, 401)
        return JSONResponse([{"id": 1}])

    spec = tmp_path / "openapi.yaml"
    spec.write_text(
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\nsecurity: [{bearer: []}]\n"
        "components: {securitySchemes: {bearer: {type: http, scheme: bearer}}}\n"
        "paths:\n  /things:\n    get:\n      responses: {'200': {description: ok}}\n", encoding="utf-8")
    with serve(Starlette(routes=[Route("/things", things)])) as origin:
        result = run_scan(spec, ScanOptions(base_url=origin, max_rps=300),
                          [IdentityConfig("alice", headers={"Authorization": "Bearer opaque-token-1"})],
                          checks=CHECKS)
    assert {(f.check.id, f.target) for f in result.findings} == {("API2-INVALID-TOKEN", "GET /things")}, (
        describe(result))
