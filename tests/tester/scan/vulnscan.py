"""Run scanner checks against a served vulnapp: the helper of the API3/4/7/8/9 check tests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bastion.tester.scan.engine import ScanResult, run_scan
from bastion.tester.scan.identities import IdentityConfig, LoginFlow
from bastion.tester.scan.interface import Check, ScanFinding, ScanOptions
from tests.tester.vulnapp.server import VulnApp, serve_vulnapp

USERS = (("alice", "alice-pass-8f3k"), ("bob", "bob-pass-2m9q"))


def identities(*, users: int = 1, admin: bool = False) -> list[IdentityConfig]:
    """Login-flow identities for the vulnapp's seeded accounts. The shop has no sign-up, so bob is marked as the
    test account made for the scan (``disposable``): the user-enumeration check may send him a wrong password."""
    out = [IdentityConfig(name, "user", login=LoginFlow("login", {"username": name, "password": password}),
                          disposable=name == "bob")
           for name, password in USERS[:users]]
    if admin:
        out.append(IdentityConfig("root", "admin",
                                  login=LoginFlow("login", {"username": "root", "password": "root-pass-7x1z"})))
    return out


def scan_app(app: VulnApp, checks: Sequence[Check], *, users: int = 1, admin: bool = False,
             allow_destructive: bool = False, timeout: float = 8.0, max_rps: float = 500.0) -> ScanResult:
    """Scan a served vulnapp with ``checks`` only (fast: a high --max-rps unless told otherwise)."""
    options = ScanOptions(base_url=app.base_url, max_rps=max_rps, timeout=timeout, allow_destructive=allow_destructive,
                          ca_file=str(app.ca_file) if app.ca_file else None, max_retry_wait=12.0)
    return run_scan(app.spec_path, options, identities(users=users, admin=admin), checks)


def scan_vulnapp(flaws: Iterable[str], checks: Sequence[Check], *, tls: bool = False, users: int = 1,
                 admin: bool = False, allow_destructive: bool = False, timeout: float = 8.0,
                 max_rps: float = 500.0) -> ScanResult:
    """Serve a fresh vulnapp with ``flaws`` and scan it with ``checks`` only."""
    with serve_vulnapp(flaws, tls=tls) as app:
        return scan_app(app, checks, users=users, admin=admin, allow_destructive=allow_destructive, timeout=timeout,
                        max_rps=max_rps)


def targets(result: ScanResult) -> set[tuple[str, str]]:
    """``(check ID, target)`` of every finding, those folded into another as proofs of one root cause included."""
    return {(f.check.id, f.target) for f in result.every_finding}


def found(result: ScanResult, check_id: str) -> list[ScanFinding]:
    """The findings of one check, those folded into another check's finding (one root cause) included."""
    return [f for f in result.every_finding if f.check.id == check_id]


def describe(result: ScanResult) -> str:
    """Findings and skips, one a line, for assertion messages."""
    lines = [f"FINDING {f.check.id} {f.target}: {f.message}" for f in result.findings]
    lines += [f"skip {s.check.id}: {s.reason}" for s in result.skips]
    return "\n".join(lines) or "(nothing)"
