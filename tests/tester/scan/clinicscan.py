"""Scanning CarePoint (``tests/tester/clinicapp``), the clinic API built without reading the scanner.

Shared by the closed-loop tests and ``loop_figures``: the identities a new user would write (a JSON login
whose token comes back in the body), a scan at test speed over HTTPS, and what "left intact" means there.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from bastion.tester.scan.engine import ScanResult, run_scan
from bastion.tester.scan.identities import IdentityConfig, LoginFlow
from bastion.tester.scan.interface import ScanOptions
from bastion.tester.scan.registry import BY_ID
from tests.tester.clinicapp.app import LOGIN_FAILURES_ALLOWED, LOGIN_LOCK_SECONDS, SEED_USERS
from tests.tester.clinicapp.server import RunningClinic

#: The check that must find each flaw, and where (None: the flaw is on every operation, any one will do).
TRAIT_CHECKS: dict[str, tuple[str, str | None]] = {
    "bola_records": ("API1-BOLA-READ", "GET /v2/patients/{patientId}/records/{recordId}"),
    "mass_assignment": ("API3-MASS-ASSIGNMENT", "PATCH /v2/me"),
    "doctor_secrets": ("API3-SENSITIVE-DATA", "GET /v2/doctors/{doctorId}"),
    "admin_users_any_role": ("API5-BFLA", "GET /v2/admin/users"),
    "login_no_limit": ("API2-LOGIN-NO-LIMIT", "POST /v2/auth/login"),
    "avatar_ssrf": ("API7-SSRF", "POST /v2/me/avatar"),
    "doctor_search_sqli": ("API8-SQL-INJECTION", "GET /v2/doctors"),
    "jwt_alg_none": ("API2-JWT-NONE", None),
    "slots_page_unbounded": ("API4-UNBOUNDED-PAGE-SIZE", "GET /v2/clinics/{clinicId}/slots"),
    "verbose_errors": ("API8-VERBOSE-ERRORS", "GET /v2/appointments"),
    "cors_any_origin": ("API8-CORS-CREDENTIALS", None),
    "legacy_v1_open": ("API2-NO-AUTH", "GET /v1/patients/{patientId}"),
}
#: True of both builds though no switch seeds them (FLAWS.md, "Also reported"): the twin's findings of these
#: checks are not false ones.
UNSEEDED = frozenset({"API4-LARGE-PAYLOAD", "API4-NO-RATE-LIMIT", "API8-SECURITY-HEADERS"})
LOGIN = "login"


def found_flaws(result: ScanResult) -> set[str]:
    """The flaws whose check reported them where they are (as a finding or a proof folded into one)."""
    pairs = {(f.check.id, f.target) for f in result.every_finding}
    return {flaw for flaw, (check, target) in TRAIT_CHECKS.items()
            if any(c == check and target in (None, t) for c, t in pairs)}


def identities() -> list[IdentityConfig]:
    """alice and bob (patients) and admin, each through the JSON login of FLAWS.md."""
    return [IdentityConfig(email.split("@")[0], role="admin" if role == "admin" else "user",
                           login=LoginFlow(LOGIN, {"email": email, "password": password}))
            for email, password, role in SEED_USERS]


def scan(clinic: RunningClinic, checks: Sequence[str] | None = None, exclude: Iterable[str] = ()) -> ScanResult:
    chosen = None if checks is None else [BY_ID[c] for c in checks]
    options = ScanOptions(base_url=clinic.base_url, max_rps=500, ca_file=str(clinic.ca_file), exclude=tuple(exclude))
    return run_scan(clinic.spec_path, options, identities(), checks=chosen)


def assert_intact(clinic: RunningClinic) -> None:
    """The seeded accounts keep their name, role and active flag, none is locked out, and their records are there."""
    names = {"alice": "Alice Martin", "bob": "Bob Nguyen", "admin": "Clinic Admin"}
    for email, _, role in SEED_USERS:
        row = clinic.state.db.execute("SELECT * FROM users WHERE email = ?", (email,)).fetchone()
        assert (row["full_name"], row["role"], row["is_active"]) == (names[email.split("@")[0]], role, 1), email
        recent = [t for t in clinic.state.failures.get(email, []) if t > time.monotonic() - LOGIN_LOCK_SECONDS]
        assert len(recent) < LOGIN_FAILURES_ALLOWED, f"{email} is locked out"
    assert clinic.state.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 4
