"""Every registered check together, as `bastion scan` runs them: the vulnapp with every switch on, and off."""

from __future__ import annotations

from bastion.tester.scan.checks import authn, bfla, bola
from bastion.tester.scan.registry import ALL_CHECKS, MISSING_MODULES
from tests.tester.scan.vulnscan import describe, scan_vulnapp
from tests.tester.vulnapp.server import ALL_FLAWS


def test_every_check_module_is_registered() -> None:
    """The registry found every check module, and check IDs are unique."""
    assert MISSING_MODULES == []
    assert len({c.info.id for c in ALL_CHECKS}) == len(ALL_CHECKS)


def test_all_switches_on_every_category_is_found() -> None:
    """With every flaw seeded, the full scan reports every API1/2/5 check of this package (API2-JWT-EXPIRED
    through the weak secret) and findings in every seeded OWASP category; checks do not disturb each other."""
    result = scan_vulnapp(ALL_FLAWS, ALL_CHECKS, users=2, admin=True, allow_destructive=True)
    ids = {f.check.id for f in result.every_finding}
    mine = {c.info.id for c in [*authn.CHECKS, *bola.CHECKS, *bfla.CHECKS]} - {"API2-INVALID-TOKEN",
                                                                                   "API5-METHOD-SWITCH"}
    assert mine <= ids, describe(result)
    categories = {f.check.category for f in result.findings}
    assert categories == {f"API{n}:2023" for n in (1, 2, 3, 4, 5, 7, 8, 9)}, describe(result)


def test_all_switches_off_nothing_is_found() -> None:
    """With every switch off, over TLS, with every check enabled (destructive ones too), the scan reports nothing."""
    result = scan_vulnapp((), ALL_CHECKS, tls=True, users=2, admin=True, allow_destructive=True)
    assert result.findings == [], describe(result)
