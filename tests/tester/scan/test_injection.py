"""API8 injection checks against the vulnapp: SQL, NoSQL, OS command and path traversal."""

from __future__ import annotations

import time

import pytest

from bastion.tester.scan.checks.injection import (
    CHECKS,
    CommandInjection,
    NoSqlInjection,
    PathTraversal,
    SqlInjection,
)
from bastion.tester.scan.report import Redactor, curl, to_json
from tests.tester.scan.vulnscan import describe, scan_vulnapp, targets

#: The time-based checks are restricted to the operations that matter here (2-3 s sleeps each).
FAST = [SqlInjection(), NoSqlInjection(), PathTraversal()]


@pytest.mark.parametrize(
    ("flaw", "expected", "message"),
    [
        ("sqli", {("API8-SQL-INJECTION", "GET /products")}, "sqlite3.OperationalError"),
        ("nosqli", {("API8-NOSQL-INJECTION", "POST /auth/login")}, '{"$ne": null}'),
        ("path_traversal", {("API8-PATH-TRAVERSAL", "GET /files")}, "/etc/passwd"),
    ],
)
def test_each_flaw_is_found_and_nothing_else(flaw: str, expected: set[tuple[str, str]], message: str) -> None:
    """With one injection switch on, the matching check reports exactly its seeded flaw, on every operation
    scanned, and the other injection checks report nothing."""
    result = scan_vulnapp({flaw}, FAST)
    assert targets(result) == expected, describe(result)
    assert message in result.findings[0].message


def test_boolean_based_sql_injection_alone_finds_the_flaw() -> None:
    """Without the error messages (boolean technique only), `search%' OR 'b%'='b` vs `... 'c%'='b` answer
    differently and consistently while the false condition answers like the normal value; the report's
    reproduce commands are that true/false pair, in that order, not the last request alone."""
    result = scan_vulnapp({"sqli"}, [SqlInjection(["listProducts"], techniques=("boolean",))])
    assert targets(result) == {("API8-SQL-INJECTION", "GET /products")}, describe(result)
    assert "consistently over two rounds" in result.findings[0].message
    normal, true_ex, false_ex = result.findings[0].evidence
    redactor = Redactor(result.secrets)
    commands = to_json(result)["findings"][0]["curl"].splitlines()
    assert commands == [curl(true_ex, redactor), curl(false_ex, redactor)]
    assert true_ex.url != false_ex.url != normal.url


def test_time_based_command_injection_is_confirmed() -> None:
    """With `cmdi`, `;sleep 2` delays the ping operation by 2 s and a 3 s sleep confirms it (the time-based SQL
    payloads, sent to the same input, do not delay it)."""
    started = time.monotonic()
    result = scan_vulnapp({"cmdi"}, [CommandInjection(["ping"]), SqlInjection(["ping"], techniques=("time",))])
    assert targets(result) == {("API8-COMMAND-INJECTION", "GET /tools/ping")}, describe(result)
    first, second = result.findings[0].evidence[1:]
    assert 2 <= first.elapsed < second.elapsed
    assert time.monotonic() - started < 20


def test_secure_app_has_no_injection_findings() -> None:
    """With every switch off (over TLS), no injection check reports anything on any operation: parameterised
    SQL, typed login fields, a validated host name and a contained file name."""
    result = scan_vulnapp((), CHECKS, tls=True, users=2)
    assert result.findings == [], describe(result)


def test_unknown_technique_is_refused() -> None:
    """A typo in the SQL techniques is an error, not a silently skipped technique."""
    with pytest.raises(ValueError, match="unknown SQL injection technique"):
        SqlInjection(techniques=("union",))
