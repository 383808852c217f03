"""`bastion audit` and `bastion docs` run as a user would: a real process, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bastion.demo.app import openapi_path


def bastion(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion", *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


def demo_config(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "books.openapi.yaml").write_text(openapi_path().read_text())
    config = tmp_path / "bastion.yaml"
    config.write_text(
        "listen: {host: 127.0.0.1, port: 8080}\n"
        "services:\n  - {name: books, upstream: 'http://127.0.0.1:9001', openapi: books.openapi.yaml}\n" + extra
    )
    return config


def test_audit_text_exits_1_on_the_demo_by_default() -> None:
    """Without --fail-on the audit exits 1 on the demo's high findings (default --fail-on low), and prints them
    grouped, counted and scored."""
    result = bastion("audit", str(openapi_path()))
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "HIGH (3)" in out and "MEDIUM (10)" in out
    assert "BAST-OBJ-003" in out and "books.openapi.yaml:" in out
    assert "Findings per rule" in out and "Score: 69/100" in out
    assert "skipped 25 rule(s)" in out  # the gateway rules, without -c


def test_audit_fail_on_threshold() -> None:
    """--fail-on high exits 1 (the demo has high findings); --fail-on critical exits 0 (it has none)."""
    assert bastion("audit", str(openapi_path()), "--fail-on", "high").returncode == 1
    assert bastion("audit", str(openapi_path()), "--fail-on", "critical").returncode == 0


def test_audit_with_config_json_to_file(tmp_path: Path) -> None:
    """-c adds the gateway rules; --format json -o writes the report to a file."""
    config = demo_config(tmp_path)
    report = tmp_path / "audit.json"
    result = bastion("audit", str(tmp_path / "books.openapi.yaml"), "-c", str(config), "-f", "json", "-o", str(report),
                     "--fail-on", "none")
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["skipped"] == []
    # The demo's secured operations take Bastion's API keys (on by default): none answers 401 unverified.
    assert not [f for f in data["findings"] if f["rule_id"] == "BAST-GW-017"]
    assert not [f for f in data["findings"] if f["rule_id"] == "BAST-GW-002"]


def test_audit_names_operations_nothing_can_verify(tmp_path: Path) -> None:
    """With API keys turned off and no other method, the demo's seven secured operations can
    only answer 401: the audit names each, with its line in the document."""
    config = demo_config(tmp_path, "policies: {auth: {api_keys: {enabled: false}}}\n")
    report = tmp_path / "audit.json"
    result = bastion("audit", str(tmp_path / "books.openapi.yaml"), "-c", str(config), "-f", "json", "-o", str(report),
                     "--fail-on", "none")
    assert result.returncode == 0, result.stderr
    gw = [f for f in json.loads(report.read_text())["findings"] if f["rule_id"] == "BAST-GW-017"]
    assert len(gw) == 7 and all(f["location"]["line"] for f in gw)


def test_audit_sarif_to_stdout() -> None:
    """--format sarif prints a SARIF 2.1.0 log on stdout."""
    result = bastion("audit", str(openapi_path()), "--format", "sarif", "--fail-on", "none")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["version"] == "2.1.0"


def test_audit_unreadable_inputs_exit_2(tmp_path: Path) -> None:
    """A missing document, or one that is not OpenAPI 3, is reported in one line with exit code 2."""
    missing = bastion("audit", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml: (top level): file not found" in missing.stderr
    swagger = tmp_path / "swagger.yaml"
    swagger.write_text("swagger: '2.0'\npaths: {}\n")
    result = bastion("audit", str(swagger))
    assert result.returncode == 2 and "expected OpenAPI version 3.0.x or 3.1.x" in result.stderr
    assert "Traceback" not in result.stderr


def test_docs_writes_markdown_and_html(tmp_path: Path) -> None:
    """`bastion docs` writes index.md and index.html for the configured APIs."""
    config = demo_config(tmp_path)
    result = bastion("docs", "-c", str(config), "--out", str(tmp_path / "site"))
    assert result.returncode == 0, result.stderr
    md = (tmp_path / "site" / "index.md").read_text()
    page = (tmp_path / "site" / "index.html").read_text()
    assert 'curl -sS -H "X-API-Key: $API_KEY" http://127.0.0.1:8080/orders' in md
    assert "application/problem+json" in page and "request_id" in page
