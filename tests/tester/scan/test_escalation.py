"""The role-escalation chain: register a throwaway user, raise its role through the API, re-run the checks the
configured readers were refused, and set the role back.

Against the library app: ``POST /catalogue/import`` is for librarians only, and with ``import_ssrf`` it fetches
any URL; ``role_change`` lets any reader make itself a librarian. The scan is given two readers and no admin.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from bastion.tester.scan.engine import ScanResult, run_scan
from bastion.tester.scan.interface import ScanOptions
from bastion.tester.scan.registry import BY_ID
from tests.tester.libraryapp.app import ROLES, SEED_USERS
from tests.tester.libraryapp.server import serve_library
from tests.tester.scan.test_safety import assert_intact, identities

CHECKS = ["API7-SSRF", "API5-ROLE-CHANGE"]


def _scan(flaws: Iterable[str]) -> tuple[ScanResult, dict[str, str]]:
    """Scan the library with ``flaws`` as alice and bob; the result and every account's role afterwards."""
    with serve_library(flaws) as lib:
        options = ScanOptions(base_url=lib.base_url, max_rps=500, ca_file=str(lib.ca_file))
        result = run_scan(lib.spec_path, options, identities(admin=False), [BY_ID[c] for c in CHECKS])
        assert_intact(lib)
        roles = {name: account.role for name, account in lib.state.accounts.items()}
    return result, roles


def test_a_reader_who_can_make_itself_a_librarian_reaches_the_librarians_ssrf() -> None:
    """With both flaws, the SSRF only a librarian reaches is found, by a throwaway user that registered, made
    itself a librarian through the role operation and logged in again; the finding tells that chain, the report
    notes it, and the throwaway is a reader again at the end (the seeded accounts untouched)."""
    result, roles = _scan({"role_change", "import_ssrf"})
    found = {(f.check.id, f.target): f for f in result.findings}
    assert set(found) == {("API7-SSRF", "POST /catalogue/import"), ("API5-ROLE-CHANGE", "PUT /users/{username}/role")}
    message = found["API7-SSRF", "POST /catalogue/import"].message
    assert "Reached through a role-escalation chain: bscan" in message
    assert ('raised its own `role` from "reader" to "librarian" through PUT /users/{username}/role; the configured '
            "users were refused here.") in message
    assert "registered through POST /users/register" in message
    throwaway = [name for name in roles if name not in {u for u, _, _ in SEED_USERS}]
    assert len(throwaway) == 1 and roles[throwaway[0]] == "reader"
    assert any(n.startswith("role-escalation chain: ") and "API7-SSRF" in n and "POST /catalogue/import" in n
               for n in result.notes)
    assert f"role-escalation chain: {throwaway[0]}'s `role` was set back to \"reader\" after the re-run" in result.notes
    assert result.health == []


@pytest.mark.parametrize(("flaws", "reason"), [
    ({"import_ssrf"}, "could not raise its privileges: PUT /users/{username}/role with `role: \"librarian\"` "
                      "answered 403"),
    ({"role_change"}, None),
])
def test_no_chain_finding_without_both_flaws(flaws: set[str], reason: str | None) -> None:
    """The SSRF alone (no way to become a librarian) is not reached, and the notes say which operations went
    unprobed and why; the role change alone is found, but the re-run as a librarian finds nothing in the secure
    import. Either way no account keeps a role it did not have."""
    result, roles = _scan(flaws)
    assert [f.check.id for f in result.findings] == ([] if reason else ["API5-ROLE-CHANGE"])
    assert all(role in ROLES for role in roles.values())
    assert [role for name, role in roles.items() if name not in {u for u, _, _ in SEED_USERS}] == ["reader"]
    if reason is not None:
        note = next(n for n in result.notes if n.startswith("role-escalation chain: "))
        assert "POST /catalogue/import" in note and reason in note
        assert note.endswith("Add an identity of the role they need to the --auth file.")
