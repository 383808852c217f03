"""The demo document's audit, the score formula, and the JSON and SARIF reports."""

from __future__ import annotations

from pathlib import Path

from bastion.demo.app import openapi_path
from bastion.tester.audit import ALL_RULES, BY_ID, Finding, Location, audit_files
from bastion.tester.audit.interface import OWASP_API_2023
from bastion.tester.audit.report import score, to_json, to_sarif

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tester.md"


def test_demo_document_findings() -> None:
    """The demo's deliberately leaky User schema is reported field by field, at the property's own line,
    and the rest of the (well-bounded) demo document yields only documentation findings."""
    result = audit_files(openapi_path())
    leaks = [f for f in result.findings if f.rule.id == "BAST-OBJ-003"]
    assert [f.location.pointer for f in leaks] == [
        "/components/schemas/User/properties/passwordHash",
        "/components/schemas/User/properties/apiToken",
        "/components/schemas/User/properties/cardNumber",
    ]
    lines = openapi_path().read_text().splitlines()
    for f in leaks:
        assert f.location.line is not None
        assert lines[f.location.line - 1].strip().startswith(f.location.pointer.rsplit("/", 1)[1] + ":")
    assert {f.rule.id for f in result.findings} == {
        "BAST-OBJ-003",  # passwordHash, apiToken, cardNumber in responses
        "BAST-RL-001",  # no operation declares 429
        "BAST-RSP-004",  # no default/500 responses
        "BAST-AUTH-005",  # the JWT scheme says nothing about token lifetime
        "BAST-RSP-002",  # /orders and /users/me declare neither 403 nor 404
        "BAST-INV-002",  # the server has no description
    }
    assert len(result.skipped) == len([r for r in ALL_RULES if r.scope == "config"])


def finding(rule_id: str) -> Finding:
    return Finding(BY_ID[rule_id], "m", Location("f.yaml", 1, "/x", "x"))


def test_score_formula() -> None:
    """100 minus, per rule, its weight plus a quarter weight per extra finding, capped at twice the weight."""
    assert score([]) == 100
    assert score([finding("BAST-OBJ-003")]) == 90  # one high: -10
    assert score([finding("BAST-OBJ-003")] * 3) == 85  # -10 * 1.5
    assert score([finding("BAST-OBJ-003")] * 50) == 80  # capped at -20
    assert score([finding("BAST-RL-001")] * 2 + [finding("BAST-INV-002")]) == 93  # -6.25 medium, info free
    assert score([finding(r.id) for r in ALL_RULES] * 10) == 0


def test_rules_are_well_formed_and_documented() -> None:
    """Rule ids are unique, each names a 2023 OWASP API category, a CWE and fix advice, and docs/tester.md
    lists every rule."""
    docs = DOCS.read_text()
    assert len(BY_ID) == len(ALL_RULES)
    for rule in ALL_RULES:
        assert rule.category in OWASP_API_2023 and rule.cwe > 0 and rule.fix and rule.checks
        assert f"`{rule.id}`" in docs, f"{rule.id} is missing from docs/tester.md"


def test_json_report() -> None:
    """The JSON report has the score, counts per severity and rule, and located findings."""
    data = to_json(audit_files(openapi_path()))
    assert data["score"] == score(audit_files(openapi_path()).findings)
    assert data["summary"]["high"] == 3
    counts = {r["id"]: r["count"] for r in data["rules"]}
    assert counts["BAST-OBJ-003"] == 3 and counts["BAST-AUTH-001"] == 0
    first = data["findings"][0]
    assert first["rule_id"] == "BAST-OBJ-003" and first["category"] == "API3:2023" and first["cwe"] == "CWE-213"
    assert first["location"]["line"] > 0 and first["location"]["pointer"].startswith("/components/")


def test_sarif_report_structure() -> None:
    """SARIF 2.1.0: one run, rules with ids and OWASP/CWE properties, each result's ruleId among the rules
    (and ruleIndex pointing at it), locations with an artifact URI and a start line."""
    sarif = to_sarif(audit_files(openapi_path()))
    assert sarif["version"] == "2.1.0" and "sarif-2.1.0" in sarif["$schema"]
    assert len(sarif["runs"]) == 1
    run = sarif["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] and driver["version"]
    rules = driver["rules"]
    ids = [r["id"] for r in rules]
    assert len(ids) == len(set(ids))
    for rule in rules:
        assert {"id", "name", "shortDescription", "fullDescription", "help", "defaultConfiguration"} <= set(rule)
        assert rule["properties"]["owasp"] in OWASP_API_2023
        assert rule["properties"]["cwe"].startswith("CWE-")
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
    assert run["results"]
    for result in run["results"]:
        assert result["ruleId"] in ids and ids[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note", "none")
        assert result["message"]["text"]
        physical = result["locations"][0]["physicalLocation"]
        assert physical["artifactLocation"]["uri"]
        assert physical["region"]["startLine"] >= 1
