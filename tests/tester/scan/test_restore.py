"""A mass-assignment probe that made its own sign-up privileged demotes that account again, and says so (or says
what it could not put back). The library's sign-up stores an undeclared ``admin`` flag and ``role``."""

from __future__ import annotations

from tests.tester.libraryapp.server import serve_library
from tests.tester.scan import test_safety as library


def _signup_finding(result: object) -> str:
    found = [f.message for f in result.findings  # type: ignore[attr-defined]
             if (f.check.id, f.target) == ("API3-MASS-ASSIGNMENT", "POST /users/register")]
    assert len(found) == 1, found
    return found[0]


def test_the_account_a_sign_up_made_admin_is_demoted() -> None:
    """With the profile write also open to mass assignment, the probe's account (registered with `admin: true`
    and the librarian's role) is written back to what a control sign-up got — `admin: false`, role reader — and
    read again: every account the scan made ends ordinary, the seeded ones are intact, and the finding says the
    values were restored."""
    with serve_library({"register_mass_assignment", "mass_assignment"}) as lib:
        seeded = set(lib.state.accounts)
        result = library.scan(lib, ["API3-MASS-ASSIGNMENT"])
        made = [lib.state.accounts[name] for name in set(lib.state.accounts) - seeded]
        library.assert_intact(lib)
    message = _signup_finding(result)
    assert "The scan restored `admin`, `role` on its throwaway account" in message
    assert made and [(a.admin, a.role) for a in made] == [(False, "reader")] * len(made)


def test_a_privilege_the_api_offers_no_way_to_remove_is_reported() -> None:
    """Without the profile flaw the account cannot clear its own `admin` flag; the librarian's role operation
    puts the role back but has no admin field. The finding names what could not be restored and the account,
    and that is exactly the library's state."""
    with serve_library({"register_mass_assignment"}) as lib:
        seeded = set(lib.state.accounts)
        result = library.scan(lib, ["API3-MASS-ASSIGNMENT"])
        made = {name: lib.state.accounts[name] for name in set(lib.state.accounts) - seeded}
        library.assert_intact(lib, demoted=False)
    message = _signup_finding(result)
    promoted = [name for name, account in made.items() if account.admin]
    assert len(promoted) == 1
    assert f"could NOT restore `admin` on its throwaway account {promoted[0]}" in message
    assert all(account.role == "reader" for account in made.values())
