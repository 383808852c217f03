"""One exit rule for `bastion audit` and `bastion scan`: by default a low-or-worse finding exits 1, info and
nothing exit 0; `--fail-on` moves the threshold the same way for both. Real processes, real files, a real target."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bastion.cli import tester
from bastion.cli.tester import DEFAULT_FAIL_ON, FailOn, fails
from bastion.tester.audit import Severity
from tests.tester.scan.test_cli import bastion as scan
from tests.tester.test_cli import bastion
from tests.tester.util import baseline
from tests.tester.vulnapp.server import serve_vulnapp

Doc = dict[str, Any]


def _thing(d: Doc) -> Doc:
    op: Doc = d["paths"]["/things/{thingId}"]["get"]
    return op


def _without(status: str) -> Callable[[Doc], None]:
    return lambda d: _thing(d)["responses"].pop(status)


def _unsecured(d: Doc) -> None:
    _thing(d)["security"] = [{}]


#: A document whose worst finding has each severity the audit rules use (BAST-RSP-002 info, BAST-RSP-001 low,
#: BAST-RL-001 medium, BAST-AUTH-006 high), and the clean baseline.
DOCUMENTS: dict[str, Callable[[Doc], None]] = {
    "clean": lambda d: None,
    "info": _without("403"),
    "low": _without("401"),
    "medium": _without("429"),
    "high": _unsecured,
}


def document(tmp_path: Path, worst: str) -> Path:
    doc = copy.deepcopy(baseline())
    DOCUMENTS[worst](doc)
    path = tmp_path / f"{worst}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_both_commands_share_the_default() -> None:
    """`audit` and `scan` declare the same --fail-on default, and it is `low`."""
    defaults = {command.__name__: inspect.signature(command).parameters["fail_on"].default
                for command in (tester.audit, tester.scan)}
    assert defaults == {"audit": FailOn.low, "scan": FailOn.low} and DEFAULT_FAIL_ON is FailOn.low


@pytest.mark.parametrize("fail_on", list(FailOn))
@pytest.mark.parametrize("highest", [None, *Severity])
def test_every_threshold_against_every_worst_finding(fail_on: FailOn, highest: Severity | None) -> None:
    """The rule for each threshold and each worst finding: `none` never fails, no finding never fails, otherwise
    a finding at or above the threshold fails."""
    order = ["info", "low", "medium", "high", "critical"]
    expected = (fail_on is not FailOn.none and highest is not None
                and order.index(highest.label) >= order.index(fail_on.value))
    assert fails(highest, fail_on) is expected


@pytest.mark.parametrize(("worst", "code"), [("clean", 0), ("info", 0), ("low", 1), ("medium", 1), ("high", 1)])
def test_audit_default_exit_code(tmp_path: Path, worst: str, code: int) -> None:
    """`bastion audit SPEC` without --fail-on: exit 1 when the worst finding is low or worse, else 0."""
    result = bastion("audit", str(document(tmp_path, worst)), "-f", "json")
    assert result.returncode == code, (result.stdout, result.stderr)
    assert '"rule_id"' in result.stdout or worst == "clean"


def test_audit_thresholds_move_the_rule(tmp_path: Path) -> None:
    """--fail-on info fails on advice, --fail-on none never fails, --fail-on high ignores a medium finding."""
    assert bastion("audit", str(document(tmp_path, "info")), "--fail-on", "info").returncode == 1
    assert bastion("audit", str(document(tmp_path, "high")), "--fail-on", "none").returncode == 0
    assert bastion("audit", str(document(tmp_path, "medium")), "--fail-on", "high").returncode == 0
    assert bastion("audit", str(document(tmp_path, "high")), "--fail-on", "high").returncode == 1


def test_scan_default_exit_code() -> None:
    """`bastion scan` without --fail-on: the secure app (no finding) exits 0; missing security headers (a low
    finding) exit 1, as in the audit; --fail-on medium lets that low finding pass, --fail-on none too."""
    check = ["--check", "API8-SECURITY-HEADERS", "--max-rps", "300"]
    with serve_vulnapp(()) as app:
        clean = scan("--spec", str(app.spec_path), "--url", app.base_url, *check)
    with serve_vulnapp({"missing_security_headers"}) as app:
        low = scan("--spec", str(app.spec_path), "--url", app.base_url, *check)
        medium = scan("--spec", str(app.spec_path), "--url", app.base_url, *check, "--fail-on", "medium")
        never = scan("--spec", str(app.spec_path), "--url", app.base_url, *check, "--fail-on", "none")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "No findings" in clean.stdout or "0 finding(s)" in clean.stdout, clean.stdout
    assert low.returncode == 1 and "API8-SECURITY-HEADERS" in low.stdout, low.stdout + low.stderr
    assert medium.returncode == 0 and "API8-SECURITY-HEADERS" in medium.stdout, medium.stderr
    assert never.returncode == 0, never.stderr
