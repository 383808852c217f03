"""Scan reports: redaction, curl commands, JSON, SARIF 2.1.0 structure, JUnit XML and escaped HTML."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from bastion.tester.audit.interface import Severity
from bastion.tester.scan.engine import ScanResult
from bastion.tester.scan.interface import CheckInfo, Exchange, ScanFinding, Skip
from bastion.tester.scan.report import Redactor, curl, to_html, to_json, to_junit, to_sarif

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXZhbHVlLWhlcmU"
PAYLOAD = "<script>alert(1)</script>"

BOLA = CheckInfo(id="API1-BOLA-READ", title="Another user's object can be read", category="API1:2023", cwe=639,
                 severity=Severity.HIGH, phase="authorization", checks="B reads A's objects.", advice="Check owners.")
NONE = CheckInfo(id="API2-JWT-NONE", title="alg none", category="API2:2023", cwe=347, severity=Severity.CRITICAL,
                 phase="authentication", checks="Unsigned tokens.", advice="Pin algorithms.")
ENUM = CheckInfo(id="API2-USER-ENUM", title="Enumeration", category="API2:2023", cwe=204, severity=Severity.MEDIUM,
                 phase="authentication", checks="Login errors.", advice="Same answer.")


def exchange(**changes: object) -> Exchange:
    base: dict[str, object] = {
        "method": "GET",
        "url": f"https://shop.test/v2/orders/1?access_token={TOKEN}&q={PAYLOAD}",
        "request_headers": (("User-Agent", "bastion-scan"), ("Authorization", f"Bearer {TOKEN}"),
                            ("Cookie", "sid=abcdef123456; theme=dark")),
        "request_body": b'{"username": "alice", "password": "alice-pass-8f3k"}',
        "status": 200,
        "response_headers": (("Set-Cookie", "sid=zzzzzzzz; HttpOnly"), ("Content-Type", "application/json")),
        "response_body": ('{"id": 1, "note": "' + PAYLOAD + '", "password_hash": "$2b$12$abcdefghijklmnopqrstuv",'
                          ' "api_token": "tok_live_0123456789"}').encode(),
        "elapsed": 0.012,
        "identity": "bob",
    }
    base.update(changes)
    return Exchange(**base)  # type: ignore[arg-type]


def result() -> ScanResult:
    res = ScanResult(base_url="https://shop.test/v2", spec_file="openapi.yaml", exchanges=42, duration=1.5,
                     identities=["alice", "bob"], secrets={TOKEN: "$BOB_TOKEN", "alice-pass-8f3k": "$ALICE_PASSWORD"})
    res.ran = [BOLA, NONE, ENUM]
    res.findings = [
        ScanFinding(BOLA, "GET /orders/{orderId}", f"bob read alice's order {PAYLOAD}", (exchange(),)),
        ScanFinding(NONE, "GET /files", "unsigned token accepted",
                    (exchange(request_headers=(("Authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."),)),)),
    ]
    res.skips = [Skip(ENUM, "login rate limited")]
    return res


def test_redaction_replaces_credentials_and_masks_secrets() -> None:
    """Known credentials become placeholders; cookies, unknown bearer signatures, secret-named values and JWT
    signatures are masked; everything else is kept."""
    red = Redactor({TOKEN: "$BOB_TOKEN"})
    assert red.header("Authorization", f"Bearer {TOKEN}") == "Bearer $BOB_TOKEN"
    assert red.header("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.zzzzzzzzzzzz") == (
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.<redacted>")
    assert red.header("X-API-Key", "k-123456") == "<redacted>"
    assert red.header("Cookie", "sid=abc; theme=dark") == "sid=<redacted>; theme=<redacted>"
    text = red.text('{"password": "hunter22", "password_hash": "$2b$12$abcdefghijkl", "name": "x"}')
    assert "hunter22" not in text and "abcdefghijkl" not in text and '"name": "x"' in text
    assert "access_token=%3Credacted%3E" in red.url("https://h/x?access_token=abcdefgh&page=2") or (
        "access_token=<redacted>" in red.url("https://h/x?access_token=abcdefgh&page=2"))


def test_curl_reproduces_with_placeholders() -> None:
    """The curl command repeats method, headers, body and URL, with credentials as expandable shell variables."""
    command = curl(exchange(method="POST"), Redactor({TOKEN: "$BOB_TOKEN"}))
    assert command.startswith("curl -sS -i -X POST ")
    assert '-H "Authorization: Bearer $BOB_TOKEN"' in command
    assert "User-Agent" not in command
    assert "alice-pass-8f3k" not in command and TOKEN not in command
    assert command.endswith('"')


def test_json_report() -> None:
    """JSON has the summary, checks with counts, skips, and findings with category, CWE, redacted evidence, curl."""
    data = to_json(result())
    assert data["summary"] == {"critical": 1, "high": 1, "medium": 0, "low": 0, "info": 0}
    assert [c["count"] for c in data["checks"]] == [1, 1, 0]
    assert data["skipped"] == [{"id": "API2-USER-ENUM", "reason": "login rate limited"}]
    first = data["findings"][0]
    assert (first["category"], first["cwe"], first["severity"]) == ("API1:2023", "CWE-639", "high")
    assert first["advice"] == "Check owners." and first["curl"].startswith("curl ")
    dumped = json.dumps(data)
    for secret in (TOKEN, "alice-pass-8f3k", "tok_live_0123456789", "abcdefghijklmnopqrstuv", "sid=zzzzzzzz"):
        assert secret not in dumped


def test_sarif_structure() -> None:
    """SARIF 2.1.0: version, schema, one run with a driver, rules with OWASP category and CWE, results naming the
    category in their properties, a CWE taxonomy, and no secrets."""
    sarif = to_sarif(result())
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    run = sarif["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "bastion-scan" and driver["version"]
    ids = [r["id"] for r in driver["rules"]]
    assert ids == ["API1-BOLA-READ", "API2-JWT-NONE", "API2-USER-ENUM"]
    for rule in driver["rules"]:
        assert {"id", "name", "shortDescription", "fullDescription", "help", "defaultConfiguration",
                "properties"} <= rule.keys()
        assert re.fullmatch(r"API\d+:2023", rule["properties"]["owasp"])
        assert rule["properties"]["cwe"].startswith("CWE-")
    assert {t["id"] for t in run["taxonomies"][0]["taxa"]} == {"639", "347", "204"}
    for res in run["results"]:
        assert {"ruleId", "ruleIndex", "level", "message", "locations"} <= res.keys()
        assert driver["rules"][res["ruleIndex"]]["id"] == res["ruleId"]
        assert res["properties"]["owasp"] in ("API1:2023", "API2:2023")
        assert res["level"] in ("error", "warning", "note", "none")
        assert res["message"]["text"]
        assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].startswith("https://shop.test/")
    assert TOKEN not in json.dumps(sarif)


def test_junit_xml() -> None:
    """JUnit: one test case per check and target; findings are failures, checks without findings pass, skips are
    skipped; counts add up."""
    root = ET.fromstring(to_junit(result()))
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (str(len(cases)), "2", "1")
    failures = [c for c in cases if c.find("failure") is not None]
    assert {(c.get("classname"), c.get("name")) for c in failures} == {
        ("API1:2023.API1-BOLA-READ", "GET /orders/{orderId}"), ("API2:2023.API2-JWT-NONE", "GET /files")}
    bola = next(c for c in failures if c.get("name") == "GET /orders/{orderId}").find("failure")
    assert bola is not None and bola.get("type") == "high" and "Reproduce: curl" in (bola.text or "")
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert len(skipped) == 1 and skipped[0].find("skipped").get("message") == "login rate limited"  # type: ignore[union-attr]
    assert any(c.get("name") == "all targets" and len(c) == 0 for c in cases)


def test_html_is_self_contained_and_escaped() -> None:
    """The HTML page has no scripts or external assets, escapes payloads from responses and messages, and shows
    severity, category, CWE, advice, evidence and the curl command."""
    page = to_html(result())
    assert "<script" not in page.lower().replace("&lt;script", "")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for text in ("API1:2023", "CWE-639", "Check owners.", "curl -sS", "$BOB_TOKEN", "login rate limited"):
        assert text in page
    assert TOKEN not in page and "alice-pass-8f3k" not in page


def test_empty_report_says_no_findings() -> None:
    """A clean scan renders 'No findings.' and empty summaries in every format."""
    res = ScanResult(base_url="https://shop.test/v2", spec_file="openapi.yaml")
    res.ran = [BOLA]
    assert "No findings." in to_html(res)
    assert to_json(res)["findings"] == [] and to_sarif(res)["runs"][0]["results"] == []
    assert ET.fromstring(to_junit(res)).get("failures") == "0"


def test_notes_reach_every_report() -> None:
    """A note of the scan (a burst sent outside --max-rps) is in the JSON, as a SARIF tool notification and on
    the HTML page."""
    res = result()
    note = "API4-NO-RATE-LIMIT: burst of 60 requests at full speed (outside --max-rps 5)"
    res.notes = [note]
    assert to_json(res)["notes"] == [note]
    notifications = to_sarif(res)["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert {"level": "note", "message": {"text": note}} in notifications
    assert f"<li>{note}</li>" in to_html(res)


WRONG_KEY = CheckInfo(id="API2-JWT-WRONG-KEY", title="Any signature", category="API2:2023", cwe=347,
                      severity=Severity.CRITICAL, phase="authentication", checks="Re-signed tokens.",
                      advice="Verify signatures.")


def folded() -> ScanResult:
    """One root finding (any signature accepted) with the unsigned-token finding folded in as its proof."""
    res = result()
    proof = ScanFinding(NONE, "GET /files", "unsigned token accepted",
                        (exchange(url="https://shop.test/v2/files?proof=none"),))
    res.ran = [NONE, WRONG_KEY]
    res.findings = [ScanFinding(WRONG_KEY, "GET /files", "re-signed token accepted. Root cause: ...",
                                (exchange(url="https://shop.test/v2/files?proof=wrong-key"),), proofs=(proof,))]
    res.skips = []
    return res


def test_every_format_shows_a_root_findings_proofs() -> None:
    """A finding folded into another (one root cause) is not a separate finding in any format, yet its message and
    its own reproducing request appear under the root in JSON, SARIF, HTML and text, and JUnit still fails its check
    (naming the root), so no check that found the flaw is reported as passed."""
    from rich.console import Console

    from bastion.cli.tester import render_scan_text

    res = folded()
    data = to_json(res)
    assert [f["check_id"] for f in data["findings"]] == ["API2-JWT-WRONG-KEY"]
    proof = data["findings"][0]["proofs"][0]
    assert (proof["check_id"], proof["target"], proof["message"]) == ("API2-JWT-NONE", "GET /files",
                                                                     "unsigned token accepted")
    assert "proof=none" in proof["curl"] and "proof=wrong-key" in data["findings"][0]["curl"]
    assert {c["id"]: c["count"] for c in data["checks"]} == {"API2-JWT-NONE": 1, "API2-JWT-WRONG-KEY": 1}
    sarif = to_sarif(res)["runs"][0]["results"]
    assert [r["ruleId"] for r in sarif] == ["API2-JWT-WRONG-KEY"]
    assert sarif[0]["properties"]["proofs"][0]["check"] == "API2-JWT-NONE"
    assert "proof=none" in sarif[0]["properties"]["proofs"][0]["curl"]
    html = to_html(res)
    assert "Also shown by <code>API2-JWT-NONE</code>" in html and "proof=none" in html
    cases = ET.fromstring(to_junit(res)).findall("testsuite/testcase")
    failed = {c.get("classname"): c.find("failure") for c in cases if c.find("failure") is not None}
    assert set(failed) == {"API2:2023.API2-JWT-NONE", "API2:2023.API2-JWT-WRONG-KEY"}
    assert "Same flaw as API2-JWT-WRONG-KEY on GET /files" in (failed["API2:2023.API2-JWT-NONE"].text or "")
    console = Console(record=True, width=400, no_color=True)
    render_scan_text(res, console)
    text = console.export_text()
    assert "also shown by API2-JWT-NONE on GET /files: unsigned token accepted" in text
    assert "passed (ran, nothing found)" not in text and "1 finding(s): 1 critical" in text


def test_a_comparison_is_reproduced_by_both_requests() -> None:
    """A finding proven by comparing two answers (reproduce=2, e.g. an unknown and a known user name) gives both
    requests as its reproduce commands, in order, in every format; other findings keep their one command."""
    from rich.console import Console

    from bastion.cli.tester import render_scan_text

    res = result()
    unknown = exchange(method="POST", url="https://shop.test/v2/login?who=ghost")
    known = exchange(method="POST", url="https://shop.test/v2/login?who=alice")
    res.findings = [ScanFinding(ENUM, "POST /login", "different answers", (exchange(), unknown, known), reproduce=2),
                    res.findings[0]]
    redactor = Redactor(res.secrets)
    pair = [curl(unknown, redactor), curl(known, redactor)]
    data = to_json(res)["findings"]
    assert data[0]["curl"].splitlines() == pair and len(data[1]["curl"].splitlines()) == 1
    assert to_sarif(res)["runs"][0]["results"][0]["properties"]["curl"].splitlines() == pair
    failures = [c.find("failure") for c in ET.fromstring(to_junit(res)).findall("testsuite/testcase")
                if c.get("classname") == "API2:2023.API2-USER-ENUM" and c.find("failure") is not None]
    assert len(failures) == 1 and "Reproduce: " + "\n".join(pair) in (failures[0].text or "")  # type: ignore[union-attr]
    console = Console(record=True, width=1000, no_color=True)
    render_scan_text(res, console)
    lines = [line.strip() for line in console.export_text().splitlines()]
    assert lines[lines.index(pair[0]) + 1] == pair[1]


def test_a_megabyte_probe_leaves_every_report_small() -> None:
    """A finding whose request and response bodies are 1 MiB each (an oversized-payload probe) yields reports of a
    few kilobytes in every format: bodies are excerpted and the curl command generates the body instead of
    embedding it."""
    from rich.console import Console

    from bastion.cli.tester import render_scan_text

    res = result()
    big = exchange(method="POST", request_body=b'{"a":1}' * 149796, response_body=b"x" * (1 << 20))
    res.findings = [ScanFinding(BOLA, "POST /orders", "a 1 MiB body was accepted", (big,))]
    console = Console(record=True, width=200, no_color=True)
    render_scan_text(res, console)
    sizes = {"json": len(json.dumps(to_json(res))), "sarif": len(json.dumps(to_sarif(res))),
             "junit": len(to_junit(res)), "html": len(to_html(res)), "text": len(console.export_text())}
    assert all(size < 32_768 for size in sizes.values()), sizes
    assert "sys.stdout.write" in to_json(res)["findings"][0]["curl"]
