"""The user-enumeration check never sends a wrong password with a configured account's name: it tests against an
account the scan registered itself, or one the user marked ``disposable``, and skips (saying why) otherwise."""

from __future__ import annotations

from bastion.tester.scan.engine import run_scan
from bastion.tester.scan.identities import IdentityConfig, LoginFlow
from bastion.tester.scan.interface import ScanOptions
from bastion.tester.scan.registry import BY_ID
from tests.tester.libraryapp.app import SEED_USERS
from tests.tester.libraryapp.server import serve_library
from tests.tester.scan import test_safety as library
from tests.tester.scan.vulnscan import USERS
from tests.tester.vulnapp.server import serve_vulnapp


def test_the_library_is_enumerated_through_an_account_the_scan_registered() -> None:
    """The library tells "no such user" from "wrong password". Configured as alice, bob and the librarian, the
    check registers its own throwaway through the sign-up, confirms it logs in, and compares a wrong password for
    it with two unknown names: the flaw is found, and no request of the check carries a seeded account's name."""
    with serve_library({"user_enumeration"}) as lib:
        seeded = set(lib.state.accounts)
        result = library.scan(lib, ["API2-USER-ENUM"])
        registered = set(lib.state.accounts) - seeded
    [finding] = result.findings
    assert (finding.check.id, finding.target) == ("API2-USER-ENUM", "POST /token")
    assert len(registered) == 1 and next(iter(registered)).startswith("bscan")
    sent = [e.request_body.decode() for e in finding.evidence]
    assert any(next(iter(registered)) in body for body in sent)
    assert not any(f"username={name}&" in body + "&" for body in sent for name, _, _ in SEED_USERS)


def test_without_sign_up_or_a_disposable_account_the_check_says_why_it_did_not_run() -> None:
    """The shop has no sign-up; with alice and bob both ordinary configured accounts, the check sends nothing to
    the login and skips with the reason (and how to enable it): neither account gets a wrong password."""
    ids = [IdentityConfig(name, login=LoginFlow("login", {"username": name, "password": password}))
           for name, password in USERS]
    with serve_vulnapp({"user_enumeration"}) as app:
        result = run_scan(app.spec_path, ScanOptions(base_url=app.base_url, max_rps=500), ids,
                          [BY_ID["API2-USER-ENUM"]])
    assert result.findings == []
    [skip] = [s for s in result.skips if s.check.id == "API2-USER-ENUM"]
    assert "`disposable: true`" in skip.reason and "lockout counter does not move" in skip.reason


def test_default_credentials_never_lock_an_account() -> None:
    """The default-credentials check guesses passwords for names that may be real accounts (admin, root): on the
    library, which counts failed logins per user name and locks a name at 5, no name gets more than 2 failed
    logins from the check, whatever its list holds, so even a lockout at 3 failures would not trip."""
    with serve_library() as lib:
        result = library.scan(lib, ["API2-DEFAULT-CREDS"])
        failures = dict(lib.state.failures)
    assert result.findings == []
    assert failures, "the check sent no login at all"
    assert max(failures.values()) <= 2, failures
    assert failures.get("admin") == 2
