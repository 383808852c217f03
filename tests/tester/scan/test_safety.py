"""The scan never damages its target, says what it held back and why, and finds what real APIs hide.

Against the library app (``tests/tester/libraryapp``): a state-changing ``GET /reset-db`` declared in its
document, a form-encoded OAuth2 login that answers failures with 200, books keyed by a client-chosen title
under a ``Books`` list, and a role column that breaks on an unknown value. Every scan here runs over real
HTTPS on loopback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from bastion.tester.audit.context import load_spec
from bastion.tester.scan.engine import ScanResult, run_scan
from bastion.tester.scan.identities import IdentityConfig, LoginFlow
from bastion.tester.scan.interface import Check, CheckInfo, ScanContext, ScanFinding, ScanOptions, Severity, Skip
from bastion.tester.scan.registry import BY_ID
from bastion.tester.scan.report import to_html, to_json, to_junit, to_sarif
from bastion.tester.scan.safety import Gate, classify
from tests.tester.libraryapp.app import ALL_FLAWS, ROLES, SEED_USERS, SPEC_PATH
from tests.tester.libraryapp.server import RunningLibrary, serve_library
from tests.tester.util import baseline, spec_of

#: One check per seeded trait: what the vulnerable library must yield, and the secure twin must not.
TRAIT_CHECKS = {
    "bola": "API1-BOLA-READ",
    "user_enumeration": "API2-USER-ENUM",
    "login_no_rate_limit": "API2-LOGIN-NO-LIMIT",
    "mass_assignment": "API3-MASS-ASSIGNMENT",
    "revealing_headers": "API8-REVEALING-HEADERS",
    "weak_jwt_secret": "API2-JWT-WEAK-SECRET",
    "register_mass_assignment": "API3-MASS-ASSIGNMENT",
    "redos": "API4-REGEX-DOS",
    "redos_path": "API4-REGEX-DOS",
    "debug_leak": "API5-BFLA",
    "body_reference": "API1-BOLA-BODY-REF",
    "role_change": "API5-ROLE-CHANGE",
    "import_ssrf": "API7-SSRF",  # a librarian's operation: reached through the role-escalation chain
}


def identities(*, admin: bool = True) -> list[IdentityConfig]:
    """alice and bob (users) and lib (admin), each through the form-encoded login."""
    out = [IdentityConfig(name, role="admin" if role == "librarian" else "user",
                          login=LoginFlow("login", {"username": name, "password": password}))
           for name, password, role in SEED_USERS]
    return out if admin else [i for i in out if i.role == "user"]


def scan(lib: RunningLibrary, checks: Sequence[str] | None = None, **options: object) -> ScanResult:
    chosen = None if checks is None else [BY_ID[c] for c in checks]
    opts = ScanOptions(base_url=lib.base_url, max_rps=500, ca_file=str(lib.ca_file), **options)  # type: ignore[arg-type]
    return run_scan(lib.spec_path, opts, identities(), checks=chosen)


def assert_intact(lib: RunningLibrary, *, demoted: bool = True) -> None:
    """The seeded accounts are as they were: role in the column's enum, no admin flag, never reset; and (unless
    ``demoted`` is False) no account the scan registered is left an admin or a librarian."""
    assert lib.state.resets == 0
    for name, _, role in SEED_USERS:
        account = lib.state.accounts[name]
        assert (account.role, account.admin, account.email, account.display_name) == (
            role, False, f"{name}@library.test", name.title()), name
    assert all(a.role in ROLES for a in lib.state.accounts.values())
    seeded = {name for name, _, _ in SEED_USERS}
    if demoted:
        assert [(a.username, a.role, a.admin) for a in lib.state.accounts.values()
                if a.username not in seeded and (a.admin or a.role == "librarian")] == []


def test_classifier_holds_back_operations_that_say_they_change_the_whole_app() -> None:
    """A GET whose operationId, path, summary or description says reset/seed/drop/logout... is held back (any
    method on its path is refused by the gate); DELETE and credential writes are destructive; --exclude holds
    back a harmless operation, --include releases a held one, and an unknown reference is an error."""
    doc = baseline()
    ok = {"200": {"description": "ok"}}
    doc["paths"].update({
        "/createdb": {"get": {"operationId": "createDb", "responses": ok}},
        "/fixtures": {"get": {"operationId": "loadFixtures", "description": "Drops and reseeds the database.",
                              "responses": ok}},
        "/session": {"get": {"operationId": "logoutUser", "responses": ok}},
        "/v1/create_db": {"get": {"summary": "Creates and populates the database with dummy data",
                                  "responses": ok}},
        "/system/setup": {"post": {"summary": "Initial setup", "responses": ok}},
        "/things/{thingId}/initial-state": {"get": {"operationId": "getInitialState", "responses": ok}},
        "/things/{thingId}/password": {"put": {"operationId": "setPassword", "responses": ok}},
    })
    spec = spec_of(doc)
    verdicts = {v.op.label: v for v in classify(spec)}
    assert verdicts["GET /createdb"].safety == "held"
    assert verdicts["GET /fixtures"].reason.startswith("its description says 'drops'")
    assert verdicts["GET /session"].safety == "held" and "logout" in verdicts["GET /session"].reason
    assert verdicts["POST /system/setup"].safety == "held"
    assert verdicts["GET /v1/create_db"].reason.startswith("its path says 'create-db'")
    assert verdicts["GET /things/{thingId}/initial-state"].safety == "read"
    assert verdicts["PUT /things/{thingId}/password"].safety == "destructive"
    assert verdicts["POST /things"].safety == "write"
    gate = Gate(list(verdicts.values()), "/v2")
    assert gate.refusal("GET", "/v2/createdb") is not None
    assert gate.refusal("POST", "/v2/createdb/") is not None  # held by name: every method on the path
    assert gate.refusal("GET", "/v2/things/7/initial-state") is None
    assert gate.refusal("GET", "/v2/CreateDB") is not None and gate.refusal("GET", "/v2/create%64b") is not None
    changed = {v.op.label: v.safety for v in classify(spec, include=["createDb"], exclude=["GET /things/{thingId}"])}
    assert changed["GET /createdb"] == "read" and changed["GET /things/{thingId}"] == "held"
    with pytest.raises(ValueError, match="--exclude: no operation 'nope' in the OpenAPI document"):
        classify(spec, exclude=["nope"])


class _CallsEverything(Check):
    """A careless check: calls the reset GET by its path, and by another method."""

    info = CheckInfo(id="API8-TEST-CARELESS", title="careless", category="API8:2023", cwe=1, severity=Severity.LOW,
                     phase="misconfiguration", checks="-", advice="-")

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        first = await ctx.raw("GET", "/reset-db", ctx.anonymous, check=self.info)
        second = await ctx.raw("POST", "/reset-db/", ctx.anonymous, check=self.info)
        assert first.status == second.status == 0
        assert first.error is not None and first.error.startswith("held back: GET /reset-db its operationId")
        assert all(op.template != "/reset-db" for op in ctx.all_operations())
        return []


def test_gate_refuses_held_back_requests_whatever_the_check_sends() -> None:
    """No check can reach a held-back operation: requests to it come back as status 0 with the reason, nothing
    reaches the app, and the report notes how many were refused."""
    with serve_library() as lib:
        result = run_scan(lib.spec_path, ScanOptions(base_url=lib.base_url, max_rps=500, ca_file=str(lib.ca_file)),
                          identities(), checks=[_CallsEverything()])
        assert lib.state.resets == 0
    assert result.skips == [] and result.refused == {"API8-TEST-CARELESS": 2}
    assert "API8-TEST-CARELESS: the safety gate refused 2 request(s) to held-back operations" in result.notes
    assert [v.op.label for v in result.held_back] == ["GET /reset-db"]


def test_secure_twin_yields_nothing_and_is_left_as_it_was() -> None:
    """Every check against the secure library: zero findings, the reset never called, the health watch healthy
    after every check, the form-encoded login worked for all three identities, and every account intact."""
    with serve_library() as lib:
        result = scan(lib)
        assert_intact(lib)
    assert [(f.check.id, f.target, f.message) for f in result.findings] == []
    assert result.identities == ["alice", "bob", "lib"]
    assert result.health == [] and result.health_checks == len(result.ran) + 1
    assert [v.op.label for v in result.held_back] == ["GET /reset-db"]
    assert not any(s.reason.startswith("not run") for s in result.skips)


def test_every_trait_is_found_and_the_app_is_left_as_it_was() -> None:
    """With every flaw on, each trait's check finds it — BOLA on a title the scan chose, under a `Books` list,
    with no ID in the create answer; user enumeration and no login limit behind 200 answers; mass assignment
    (restored) on an update and on the public sign-up; a backtracking e-mail pattern in a body; a revealing
    header; a six-digit JWT secret; an administrative list that answers anyone with every password; another
    user's profile changed through a user name in the body; a user raising its own role through a declared
    role operation (both set back); the librarians' SSRF, reached by a throwaway user that made itself a
    librarian — and the seeded accounts are intact afterwards."""
    with serve_library(ALL_FLAWS) as lib:
        result = scan(lib, sorted(TRAIT_CHECKS.values()))
        assert_intact(lib)
    found = {(f.check.id, f.target): f for f in result.findings}
    assert {check for check, _ in found} == set(TRAIT_CHECKS.values())
    assert "read alice's object at /books/bscan-alice-" in found["API1-BOLA-READ", "GET /books/{book_title}"].message
    assert "The scan restored `admin` to false." in found["API3-MASS-ASSIGNMENT", "PUT /me"].message
    signup = found["API3-MASS-ASSIGNMENT", "POST /users/register"].message
    assert 'Signing up with `admin: true`, `role: "librarian"`' in signup and "No login is needed" in signup
    assert "The body field `email` (an e-mail address) with " in found["API4-REGEX-DOS", "POST /users/register"].message
    assert found["API1-BOLA-BODY-REF", "PUT /users/profile"].message == (
        "bob changed alice's `display_name` by naming alice in the body's `username`. The scan wrote the old values "
        "back.")
    assert found["API5-ROLE-CHANGE", "PUT /users/{username}/role"].message == (
        'alice raised its own `role` from "reader" to "librarian" through PUT /users/{username}/role. The scan set '
        'it back to "reader".')
    assert "Reached through a role-escalation chain: bscan" in found["API7-SSRF", "POST /catalogue/import"].message
    # Three seeded accounts and the throwaway the enumeration check registered (it never tries a real account).
    assert found["API5-BFLA", "GET /admin/users"].message == (
        "GET /admin/users answered 200 without any login, although the document declares it secured. The answer "
        "exposes `[].password` (4 values).")
    # The curl command repeats the request that shows the flaw, not the read-back that confirmed it.
    curls = {(f["check_id"], f["target"]): f["curl"] for f in to_json(result)["findings"]}
    assert curls["API3-MASS-ASSIGNMENT", "PUT /me"].startswith("curl -sS -i -X PUT ")
    assert curls["API1-BOLA-BODY-REF", "PUT /users/profile"].startswith("curl -sS -i -X PUT ")
    assert "$BOB_TOKEN" in curls["API1-BOLA-BODY-REF", "PUT /users/profile"]
    by_check = {f.check.id: f for f in result.findings}
    assert "x-powered-by: express 4.17.1" in by_check["API8-REVEALING-HEADERS"].message.lower()
    assert result.health == []


def test_an_included_reset_is_caught_by_the_health_watch() -> None:
    """Opting into the reset GET (--include) lets a check call it; the reset rotates the token key and drops the
    data: the health watch sees the identities' credentials stop working (it logs them in again) and the book the
    scan created gone, stops the scan, skips the remaining checks with the reason, and every report format says
    so."""
    checks = ["API1-BOLA-READ", "API3-UNDECLARED-FIELDS", "API8-REVEALING-HEADERS", "API8-SECURITY-HEADERS"]
    with serve_library() as lib:
        result = scan(lib, checks, include=("resetDatabase",))
        assert lib.state.resets >= 1
    assert result.held_back == []
    stopped = result.stopped
    assert stopped is not None and stopped.after == "API3-UNDECLARED-FIELDS"
    assert "alice's credentials stopped working: GET /me answers 401" in stopped.message
    assert "the scan logged alice in again" in stopped.message
    assert stopped.message.endswith("(created by the scan) answers 404: data vanished")
    assert [s.check.id for s in result.skips if s.reason.startswith("not run: the target broke after "
                                                                    "API3-UNDECLARED-FIELDS")] == checks[2:]
    assert [i.id for i in result.ran] == checks[:2]
    data = to_json(result)
    assert data["health"]["status"] == "stopped" and data["health"]["events"][0]["stopped"] is True
    assert "credentials stopped working" in to_html(result)
    sarif = to_sarif(result)["runs"][0]["invocations"][0]
    assert sarif["executionSuccessful"] is False
    assert sarif["toolExecutionNotifications"][0]["level"] == "error"
    assert 'type="target-broken"' in to_junit(result)


class _BreaksTheRole(Check):
    """A careless probe: stores a role the app's enum column does not know (every later request of the user
    then answers 500)."""

    info = CheckInfo(id="API3-TEST-CARELESS", title="careless", category="API3:2023", cwe=1, severity=Severity.LOW,
                     phase="properties", checks="-", advice="-")

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        answer = await ctx.raw("PUT", "/me", ctx.users[0], headers={"Content-Type": "application/json"},
                               body=b'{"role": "admin"}', check=self.info)
        assert answer.status == 200
        return []


def test_health_watch_stops_the_scan_when_the_target_answers_5xx() -> None:
    """After a check leaves a user's row unreadable, the health watch sees that user's baseline answer 500 where
    it answered 200, stops the scan, and the later checks are skipped with the reason."""
    with serve_library({"mass_assignment"}) as lib:
        result = run_scan(lib.spec_path, ScanOptions(base_url=lib.base_url, max_rps=500, ca_file=str(lib.ca_file)),
                          identities(), checks=[_BreaksTheRole(), BY_ID["API8-REVEALING-HEADERS"]])
        assert lib.state.accounts["alice"].role == "admin"
    stopped = result.stopped
    assert stopped is not None and stopped.after == "API3-TEST-CARELESS"
    assert stopped.message == "GET /me as alice now answers 500; it answered 200 at the start"
    assert [(s.check.id, s.reason.split(" (")[0]) for s in result.skips] == [
        ("API8-REVEALING-HEADERS", "not run: the target broke after API3-TEST-CARELESS")]


class _RenamesAlice(Check):
    """A probe that changes the identity's own profile and does not put it back."""

    info = CheckInfo(id="API4-TEST-CARELESS", title="careless", category="API4:2023", cwe=1, severity=Severity.LOW,
                     phase="resources", checks="-", advice="-")

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        answer = await ctx.raw("PUT", "/me", ctx.users[0], headers={"Content-Type": "application/json"},
                               body=b'{"display_name": "probe"}', check=self.info)
        assert answer.status == 200
        return []


def test_the_identities_own_profiles_are_put_back_after_the_scan() -> None:
    """A profile field a check changed on an identity's own "me" resource is written back when the scan ends,
    and the report's notes say so."""
    with serve_library() as lib:
        result = run_scan(lib.spec_path, ScanOptions(base_url=lib.base_url, max_rps=500, ca_file=str(lib.ca_file)),
                          identities(), checks=[_RenamesAlice()])
        assert lib.state.accounts["alice"].display_name == "Alice"
    assert "alice's display_name on /me changed during the scan and were written back" in result.notes


def test_a_single_user_gets_a_registered_user_b_for_the_cross_user_checks() -> None:
    """With only alice configured, the scan registers a throwaway user through the API's sign-up, logs it in with
    alice's login flow (the form), and runs BOLA with it as user B — which finds the flaw; --no-register (the
    option) leaves the check skipped for want of a second user."""
    only_alice = [i for i in identities() if i.name == "alice"]
    with serve_library({"bola"}) as lib:
        options = ScanOptions(base_url=lib.base_url, max_rps=500, ca_file=str(lib.ca_file))
        result = run_scan(lib.spec_path, options, only_alice, checks=[BY_ID["API1-BOLA-READ"]])
        alone = run_scan(lib.spec_path, ScanOptions(base_url=lib.base_url, max_rps=500, ca_file=str(lib.ca_file),
                                                    register_users=False), only_alice,
                         checks=[BY_ID["API1-BOLA-READ"]])
    assert len(result.identities) == 2 and result.identities[1].startswith("bscan")
    assert any(n.startswith(f"registered the throwaway user {result.identities[1]} through POST /users/register")
               for n in result.notes)
    assert [f.check.id for f in result.findings] == ["API1-BOLA-READ"]
    assert "read alice's object" in result.findings[0].message
    assert alone.identities == ["alice"] and alone.findings == []
    assert [s.reason for s in alone.skips] == ["needs 2 user identities (--auth with 2 users), got 1"]


def test_redos_in_an_email_change_is_found_and_the_address_kept() -> None:
    """An e-mail change is destructive by the classifier, yet its body field is probed for ReDoS because the old
    address can be read back (GET /users/{username}, filled with the identity's own name) and a probe is never a
    valid address; the slow pattern is found on the update, and every address is as it was."""
    with serve_library({"redos_update"}) as lib:
        result = scan_with(lib, [BY_ID["API4-REGEX-DOS"]])
        assert_intact(lib)
    assert [(f.check.id, f.target) for f in result.findings] == [("API4-REGEX-DOS", "PUT /users/{username}/email")]
    assert "/users/alice/email" in result.findings[0].evidence[-1].url


def test_dry_run_lists_the_plan_and_sends_nothing(tmp_path: Path) -> None:
    """`bastion scan --dry-run` prints each operation's safety verdict (the reset held back with its reason),
    the form login, the discovery requests and the checks, against a URL where nothing listens."""
    ids = tmp_path / "ids.yaml"
    ids.write_text("identities:\n  - {name: alice, login: {operation: login, body: {username: alice, password: x}}}\n"
                   "exclude: [getBook]\n")
    proc = subprocess.run([sys.executable, "-m", "bastion", "scan", "--spec", str(SPEC_PATH), "--url",
                           "http://127.0.0.1:9", "--auth", str(ids), "--dry-run"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "nothing was sent" in proc.stdout
    assert "held        GET /reset-db  (its operationId says 'reset'" in proc.stdout
    assert "held        GET /books/{book_title}  (excluded by the user (--exclude))" in proc.stdout
    assert "alice: POST /token (application/x-www-form-urlencoded)" in proc.stdout
    assert "POST /books as each identity" in proc.stdout
    assert "POST /users/register as anonymous  a throwaway user B (--no-register turns this off)" in proc.stdout
    assert "API1-BOLA-READ" in proc.stdout  # skipped: needs two users
    bad = subprocess.run([sys.executable, "-m", "bastion", "scan", "--spec", str(SPEC_PATH), "--url",
                          "http://127.0.0.1:9", "--exclude", "nosuch", "--dry-run"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "--exclude: no operation 'nosuch'" in bad.stderr


def test_report_json_lists_held_back_operations_and_health() -> None:
    """The JSON report names each held-back operation with its reason, and the health watch's verdict."""
    spec = load_spec(SPEC_PATH)
    result = ScanResult("https://x.test", str(SPEC_PATH), verdicts=classify(spec))
    data = json.loads(json.dumps(to_json(result)))
    assert data["safety"]["held_back"] == [{
        "operation": "GET /reset-db", "operation_id": "resetDatabase",
        "reason": "its operationId says 'reset' (state-changing by name; pass --include to call it)"}]
    assert data["health"]["status"] == "healthy"


def test_a_large_probe_body_is_generated_not_embedded_in_curl() -> None:
    """A 1 MiB probe body becomes a short command that generates exactly that body (run here through the shell);
    a large body without a repeating pattern is named as a file with its size."""
    from bastion.tester.scan.interface import Exchange
    from bastion.tester.scan.report import Redactor, curl

    body = b'{"a":1}' * 149796 + b"{"
    exchange = Exchange("POST", "https://x.test/books", (("Content-Type", "application/json"),), body, 413, (),
                        b"", 0.1, "alice")
    command = curl(exchange, Redactor({}))
    assert len(command) < 300
    data = command.split("--data-binary ", 1)[1].rsplit(" ", 1)[0]
    produced = subprocess.run(["bash", "-c", f"printf %s {data}"], capture_output=True, check=True).stdout
    assert produced == body
    noise = bytes(range(256)) * 40
    assert "@request-body.bin  # 10240 bytes" in curl(exchange.__class__(
        "POST", "https://x.test/b", (), noise, 413, (), b"", 0.1, "alice"), Redactor({}))


class _LogsAliceOut(Check):
    """A check whose requests end alice's session (the app rotates its token key), and nothing else."""

    info = CheckInfo(id="API2-TEST-LOGOUT", title="logout", category="API2:2023", cwe=1, severity=Severity.LOW,
                     phase="authentication", checks="-", advice="-")

    def __init__(self, lib: RunningLibrary) -> None:
        self.lib = lib

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        self.lib.state.secret = b"another-key-" + self.lib.state.secret
        return []


def test_an_ended_session_is_a_warning_and_the_scan_logs_in_again() -> None:
    """When the identities' sessions end but their accounts and data are intact, the health watch logs them in
    again and warns; the scan goes on (the next check runs with the new sessions and finds its flaw)."""
    with serve_library({"revealing_headers"}) as lib:
        result = scan_with(lib, [_LogsAliceOut(lib), BY_ID["API8-REVEALING-HEADERS"]])
    assert result.stopped is None
    assert [e.after for e in result.health] == ["API2-TEST-LOGOUT"]
    assert "the scan logged alice in again" in result.health[0].message
    assert [f.check.id for f in result.findings] == ["API8-REVEALING-HEADERS"]
    assert to_json(result)["health"]["status"] == "degraded"


def scan_with(lib: RunningLibrary, checks: Sequence[Check]) -> ScanResult:
    return run_scan(lib.spec_path, ScanOptions(base_url=lib.base_url, max_rps=500, ca_file=str(lib.ca_file)),
                    identities(), checks=checks)


def test_text_report_says_what_passed_what_was_held_back_who_scanned_and_the_health(tmp_path: Path) -> None:
    """`bastion scan` in text: checks that ran without finding are listed as passed, the held-back reset with its
    reason, the identities used, the target's health; with standard error not a terminal, no progress is shown."""
    ids = tmp_path / "ids.yaml"
    ids.write_text("identities:\n" + "".join(
        f"  - {{name: {n}, login: {{operation: login, body: {{username: {n}, password: {p}}}}}}}\n"
        for n, p, _ in SEED_USERS[:2]))
    with serve_library() as lib:
        proc = subprocess.run([sys.executable, "-m", "bastion", "scan", "--spec", str(lib.spec_path), "--url",
                               lib.base_url, "--ca-file", str(lib.ca_file), "--auth", str(ids), "--max-rps", "300",
                               "--check", "API1-BOLA-READ", "--check", "API8-REVEALING-HEADERS"],
                              capture_output=True, text=True, timeout=120, check=False)
        assert lib.state.resets == 0
    assert proc.returncode == 0, proc.stderr
    assert "passed (ran, nothing found): API1-BOLA-READ, API8-REVEALING-HEADERS" in proc.stdout
    assert "held back GET /reset-db: its operationId says 'reset'" in proc.stdout
    assert "identities: alice, bob" in proc.stdout
    assert "target health: healthy" in proc.stdout
    assert proc.stderr == ""


def test_a_leaking_admin_list_is_one_finding_saying_no_login_was_needed_and_what_leaked() -> None:
    """With `debug_leak`, the administrative user list answers anonymously with every password: API5-BFLA and
    API2-NO-AUTH both see it, and the report has one finding for it, saying that no login was needed and what
    leaked, with the missing-authentication finding as its proof."""
    with serve_library({"debug_leak"}) as lib:
        result = scan_with(lib, [BY_ID["API2-NO-AUTH"], BY_ID["API5-BFLA"]])
    assert [(f.check.id, f.target) for f in result.findings] == [("API5-BFLA", "GET /admin/users")]
    leak = result.findings[0]
    assert leak.message.startswith("GET /admin/users answered 200 without any login, although the document declares "
                                   "it secured. The answer exposes `[].password` (3 values). Root cause: the "
                                   "administrative operation checks no login at all")
    assert [(p.check.id, p.target) for p in leak.proofs] == [("API2-NO-AUTH", "GET /admin/users")]


def test_redos_in_a_path_parameter_without_a_pattern_is_found() -> None:
    """A book title the document declares as a plain string (no pattern) but the API checks with a backtracking
    regex is probed through the read's path and found; the secure twin, checking the same format with a linear
    pattern, yields nothing for the same probes."""
    with serve_library({"redos_path"}) as lib:
        result = scan_with(lib, [BY_ID["API4-REGEX-DOS"]])
        assert_intact(lib)
    with serve_library() as twin:
        secure = scan_with(twin, [BY_ID["API4-REGEX-DOS"]])
    assert [(f.check.id, f.target) for f in result.findings] == [("API4-REGEX-DOS", "GET /books/{book_title}")]
    assert "The path parameter `book_title` (a plain string, no pattern declared) with " in result.findings[0].message
    assert "/books/aaaaaaaaaaaa" in result.findings[0].evidence[-1].url
    assert secure.findings == []
