"""The closed loop on CarePoint (``tests/tester/clinicapp``), an API built without reading the scanner.

Its traits the checks did not expect, each one generalised in the scanner (never the app): versions in the
paths' first segment (``/v1/...`` next to ``/v2/...``) with a server URL that has none, a string ``date``
query parameter whose bad value is an unhandled error, lists that ignore unknown query parameters, the
caller's own ID under ``/v2/patients/{patientId}/...``, and a login that locks an account after five failures.
Every scan runs over real HTTPS on loopback.
"""

from __future__ import annotations

from tests.tester.clinicapp.app import ALL_FLAWS, SEED_USERS
from tests.tester.clinicapp.server import serve_clinic
from tests.tester.scan.clinicscan import TRAIT_CHECKS, UNSEEDED, assert_intact, found_flaws, scan


def test_a_list_that_ignores_unknown_parameters_is_no_nosql_injection() -> None:
    """The secure twin answers `date=<random>` with 400 and `date[$ne]=` with 200 because it ignores the unknown
    parameter: a control with a key no database knows (`date[bscan...]=`) gets the same list, so there is no
    NoSQL finding (there was one before the control)."""
    with serve_clinic() as clinic:
        result = scan(clinic, ["API8-NOSQL-INJECTION"])
        assert_intact(clinic)
    assert result.findings == []


def test_a_traceback_behind_a_free_text_date_is_reported_and_not_on_the_twin() -> None:
    """`date` is declared as a plain string; a random word there is an unhandled error whose 500 carries the
    Python traceback on the vulnerable build (found), and a 400 problem on the secure twin (nothing). Before,
    only integer/number/boolean parameters got an unexpected value."""
    with serve_clinic({"verbose_errors"}) as clinic:
        flawed = scan(clinic, ["API8-VERBOSE-ERRORS"])
        assert_intact(clinic)
    assert [(f.check.id, f.target) for f in flawed.findings] == [("API8-VERBOSE-ERRORS", "GET /v2/appointments")]
    assert "a Python traceback" in flawed.findings[0].message
    with serve_clinic() as clinic:
        twin = scan(clinic, ["API8-VERBOSE-ERRORS"])
    assert twin.findings == []


def test_records_under_the_patients_own_id_are_read_across_patients_and_the_old_route_without_login() -> None:
    """The account is named after who logs in (`/v2/patients/{patientId}/records`): the scan fills `{patientId}`
    with alice's own ID read from `GET /v2/me`, learns her records from the list, and bob reads one (BOLA);
    with that ID the retired `GET /v1/patients/{patientId}` answers without any credential (NO-AUTH). The
    secure twin yields neither. Before, `patientId` was not known as an account parameter: both were missed."""
    with serve_clinic({"bola_records", "legacy_v1_open"}) as clinic:
        flawed = scan(clinic, ["API1-BOLA-READ", "API2-NO-AUTH"])
        assert_intact(clinic)
        alice = clinic.state.user_id("alice@carepoint.example")
    assert sorted((f.check.id, f.target) for f in flawed.findings) == [
        ("API1-BOLA-READ", "GET /v2/patients/{patientId}/records/{recordId}"),
        ("API2-NO-AUTH", "GET /v1/patients/{patientId}")]
    bola = next(f for f in flawed.findings if f.check.id == "API1-BOLA-READ")
    assert bola.message.startswith(f"bob read alice's object at /v2/patients/{alice}/records/")
    with serve_clinic() as clinic:
        twin = scan(clinic, ["API1-BOLA-READ", "API2-NO-AUTH"])
        assert_intact(clinic)
    assert twin.findings == []


def test_injection_probes_of_the_login_do_not_lock_out_the_user_of_its_example() -> None:
    """The login's documented example is alice's real e-mail. The injection checks vary the password with the
    other fields left at the sample: before, each probe was a failed login for alice, and the secure twin
    locked her out (429 for 60 s). Now a real account's name in a sample body with a password is replaced by
    a throwaway one, and the enumeration check tests against an account it registered itself: not one failed
    login for any seeded account."""
    with serve_clinic() as clinic:
        scan(clinic, ["API8-SQL-INJECTION", "API8-COMMAND-INJECTION", "API2-USER-ENUM"])
        assert_intact(clinic)
        assert {email: clinic.state.failures.get(email, []) for email, _, _ in SEED_USERS} == {
            email: [] for email, _, _ in SEED_USERS}


def test_every_flaw_is_found_and_the_secure_twin_yields_only_what_is_true_of_it() -> None:
    """A full scan of the vulnerable build finds each of the twelve flaws on its operation; a full scan of the
    secure twin finds nothing but what is true of both builds and seeded by no switch (UNSEEDED: no security
    headers, no body size limit, no rate limit); both builds' seeded accounts are intact afterwards (roles,
    names, records, and no lockout)."""
    with serve_clinic(ALL_FLAWS) as clinic:
        flawed = scan(clinic)
        assert_intact(clinic)
    assert sorted(set(TRAIT_CHECKS) - found_flaws(flawed)) == []
    with serve_clinic() as clinic:
        twin = scan(clinic)
        assert_intact(clinic)
    assert [(f.check.id, f.target) for f in twin.findings if f.check.id not in UNSEEDED] == []
    assert twin.health == []


def test_what_the_scan_created_and_left_is_listed_in_the_notes() -> None:
    """The registrations of the mass-assignment check and its throwaway users answer 201 and are not removed
    (CarePoint offers no way to delete an account): the notes (text, JSON, SARIF, JUnit and HTML reports) count
    them per operation with the reason, and the count is what the app really holds beyond its five seeded
    users."""
    with serve_clinic() as clinic:
        result = scan(clinic, ["API3-MASS-ASSIGNMENT"])
        extra = clinic.state.db.execute("SELECT COUNT(*) FROM users").fetchone()[0] - 5
    assert extra > 0
    assert (f"left on the target: {extra} object(s) the scan created through POST /v2/auth/register and did not "
            "remove: the document gives what POST /v2/auth/register created no path, so the scan cannot address it "
            "to remove it") in result.notes
