"""Scores, counts and machine-readable reports (JSON, SARIF 2.1.0) of an audit.

The score starts at 100. Each rule that found something deducts its severity's weight
``w`` (critical 20, high 10, medium 5, low 2, info 0) once, plus a quarter of ``w`` for each
further finding, up to ``2 * w`` per rule: one rule firing everywhere is one problem made
everywhere, not a hundred problems. The total is floored at 0 and rounded down::

    score = max(0, floor(100 - sum over rules of w * (1 + min(n - 1, 4) / 4)))
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bastion import __version__
from bastion.tester.audit.engine import AuditResult
from bastion.tester.audit.interface import OWASP_API_2023, Finding, RuleInfo, Severity

WEIGHTS: dict[Severity, int] = {
    Severity.CRITICAL: 20,
    Severity.HIGH: 10,
    Severity.MEDIUM: 5,
    Severity.LOW: 2,
    Severity.INFO: 0,
}
SARIF_LEVEL: dict[Severity, str] = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
#: GitHub code scanning reads ``security-severity`` (0.1-10) to rank results.
SECURITY_SEVERITY: dict[Severity, str] = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.1",
}
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def rule_counts(findings: list[Finding]) -> Counter[str]:
    """How many findings each rule made."""
    return Counter(f.rule.id for f in findings)


def severity_counts(findings: list[Finding]) -> dict[str, int]:
    """Findings per severity, every severity present (most severe first)."""
    counts = Counter(f.severity for f in findings)
    return {s.label: counts.get(s, 0) for s in sorted(Severity, reverse=True)}


def deduction(rule: RuleInfo, count: int) -> float:
    """Points a rule with ``count`` findings takes off the score."""
    if count <= 0:
        return 0.0
    weight = WEIGHTS[rule.severity]
    return weight * (1 + min(count - 1, 4) / 4)


def score(findings: list[Finding]) -> int:
    """The score out of 100 (see the module docstring for the formula)."""
    by_rule: dict[str, tuple[RuleInfo, int]] = {}
    for f in findings:
        info, n = by_rule.get(f.rule.id, (f.rule, 0))
        by_rule[f.rule.id] = (info, n + 1)
    total = sum(deduction(info, n) for info, n in by_rule.values())
    return max(0, math.floor(100 - total + 1e-9))


def worst(findings: list[Finding]) -> Severity | None:
    return max((f.severity for f in findings), default=None)


def _rule_json(rule: RuleInfo) -> dict[str, Any]:
    return {
        "id": rule.id,
        "title": rule.title,
        "category": rule.category,
        "category_title": OWASP_API_2023[rule.category],
        "cwe": rule.cwe_id,
        "severity": rule.severity.label,
        "scope": rule.scope,
        "checks": rule.checks,
        "fix": rule.fix,
    }


def to_json(result: AuditResult) -> dict[str, Any]:
    """The audit as a JSON-ready mapping."""
    counts = rule_counts(result.findings)
    return {
        "tool": {"name": "bastion audit", "version": __version__},
        "files": result.files,
        "score": score(result.findings),
        "summary": severity_counts(result.findings),
        "rules": [{**_rule_json(r), "count": counts.get(r.id, 0)} for r in result.ran],
        "skipped": [{"id": s.rule.id, "reason": s.reason} for s in result.skipped],
        "findings": [
            {
                "rule_id": f.rule.id,
                "title": f.rule.title,
                "severity": f.severity.label,
                "category": f.rule.category,
                "cwe": f.rule.cwe_id,
                "message": f.message,
                "location": {
                    "file": f.location.file,
                    "line": f.location.line,
                    "pointer": f.location.pointer,
                    "field": f.location.field,
                },
                "fix": f.rule.fix,
            }
            for f in result.findings
        ],
    }


def artifact_uri(file: str) -> str:
    """A SARIF artifact URI: relative paths stay relative (to the working folder), absolute become file://."""
    path = Path(file)
    if path.is_absolute():
        return path.as_uri()
    return quote(path.as_posix())


def _camel(title: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in title.replace("-", " ").split() if w.isalnum())


def to_sarif(result: AuditResult) -> dict[str, Any]:
    """The audit as a SARIF 2.1.0 log with one run."""
    rules = result.ran
    index = {r.id: i for i, r in enumerate(rules)}
    driver_rules = [
        {
            "id": r.id,
            "name": _camel(r.title),
            "shortDescription": {"text": r.title},
            "fullDescription": {"text": r.checks},
            "help": {"text": r.fix},
            "defaultConfiguration": {"level": SARIF_LEVEL[r.severity]},
            "properties": {
                "owasp": r.category,
                "owasp-title": OWASP_API_2023[r.category],
                "cwe": r.cwe_id,
                "severity": r.severity.label,
                "security-severity": SECURITY_SEVERITY[r.severity],
                "tags": ["security", f"OWASP-{r.category}", f"external/cwe/cwe-{r.cwe}"],
            },
        }
        for r in rules
    ]
    results: list[dict[str, Any]] = []
    for f in result.findings:
        physical: dict[str, Any] = {"artifactLocation": {"uri": artifact_uri(f.location.file)}}
        if f.location.line is not None:
            physical["region"] = {"startLine": f.location.line}
        location: dict[str, Any] = {"physicalLocation": physical}
        if f.location.pointer:
            location["logicalLocations"] = [{"fullyQualifiedName": f.location.pointer, "kind": "member"}]
        results.append(
            {
                "ruleId": f.rule.id,
                "ruleIndex": index[f.rule.id],
                "level": SARIF_LEVEL[f.severity],
                "message": {"text": f.message},
                "locations": [location],
                "properties": {"owasp": f.rule.category, "cwe": f.rule.cwe_id, "severity": f.severity.label},
            }
        )
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "bastion-audit", "version": __version__, "rules": driver_rules}},
                "results": results,
                "properties": {"score": score(result.findings)},
            }
        ],
    }
