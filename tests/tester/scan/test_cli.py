"""`bastion scan` run as a user would: a real process against the served vulnapp, real files."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.tester.vulnapp.server import serve_vulnapp

IDENTITIES = """\
identities:
  - name: alice
    login: {operation: login, body: {username: alice, password: "${ALICE_PASSWORD}"}, token: /access_token}
  - name: bob
    login: {operation: "POST /auth/login", body: {username: bob, password: bob-pass-2m9q}}
  - name: root
    role: admin
    login: {operation: login, body: {username: root, password: root-pass-7x1z}}
"""


def bastion(*args: str, stdin: str | None = "") -> subprocess.CompletedProcess[str]:
    env = {"ALICE_PASSWORD": "alice-pass-8f3k", "PATH": "/usr/bin:/bin", "BASTION_PURE_PYTHON": "1"}
    return subprocess.run([sys.executable, "-m", "bastion", "scan", *args], capture_output=True, text=True,
                          timeout=120, check=False, input=stdin, env=env)


def identities(tmp_path: Path) -> Path:
    path = tmp_path / "identities.yaml"
    path.write_text(IDENTITIES, encoding="utf-8")
    return path


def test_scan_finds_flaws_writes_sarif_and_exits_1(tmp_path: Path) -> None:
    """With `bola` and `missing_auth`, the selected checks find both; the SARIF file names the OWASP categories;
    the exit code is 1 (a finding at or above the default --fail-on) and the report path is printed."""
    report = tmp_path / "scan.sarif"
    with serve_vulnapp({"bola", "missing_auth"}) as app:
        proc = bastion("--spec", str(app.spec_path), "--url", app.base_url, "--auth", str(identities(tmp_path)),
                       "--max-rps", "300", "--check", "API1-BOLA-READ", "--check", "API2-NO-AUTH",
                       "--format", "sarif", "-o", str(report))
    assert proc.returncode == 1, proc.stderr
    assert f"wrote {report} (2 finding(s))" in proc.stderr
    sarif = json.loads(report.read_text())
    results = sarif["runs"][0]["results"]
    assert {(r["ruleId"], r["properties"]["owasp"]) for r in results} == {
        ("API1-BOLA-READ", "API1:2023"), ("API2-NO-AUTH", "API2:2023")}
    assert "alice-pass-8f3k" not in report.read_text()


def test_clean_tls_scan_exits_0_with_junit_and_html(tmp_path: Path) -> None:
    """Against the secure app over TLS (--ca-file), the API1/API2/API5 checks find nothing: exit 0, a JUnit file
    without failures, and with --fail-on critical an HTML report that says so."""
    checks = ["API1-BOLA-READ", "API1-BOLA-GUESS", "API2-NO-AUTH", "API2-JWT-NONE", "API2-JWT-WRONG-KEY",
              "API2-TOKEN-IN-URL", "API5-BFLA"]
    selected = [arg for c in checks for arg in ("--check", c)]
    with serve_vulnapp((), tls=True) as app:
        common = ["--spec", str(app.spec_path), "--url", app.base_url, "--auth", str(identities(tmp_path)),
                  "--ca-file", str(app.ca_file), "--max-rps", "300", *selected]
        junit = bastion(*common, "--format", "junit", "-o", str(tmp_path / "scan.xml"))
        html = bastion(*common, "--format", "html", "-o", str(tmp_path / "scan.html"), "--fail-on", "critical")
        untrusted = bastion("--spec", str(app.spec_path), "--url", app.base_url, "--check", "API2-NO-AUTH")
    assert junit.returncode == 0, junit.stderr
    root = ET.fromstring((tmp_path / "scan.xml").read_text())
    assert root.get("failures") == "0" and int(root.get("tests") or 0) >= len(checks)
    assert html.returncode == 0, html.stderr
    assert "No findings." in (tmp_path / "scan.html").read_text()
    # Without --ca-file the certificate is not trusted: the scan stops before any check, saying why.
    assert untrusted.returncode == 2
    assert f"cannot reach {app.base_url}" in untrusted.stderr and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


def test_text_output_lists_findings_with_curl(tmp_path: Path) -> None:
    """The text report prints each finding with check, category, CWE and target, a curl line with credentials as
    $PLACEHOLDERS, the fix advice and a summary."""
    with serve_vulnapp({"bola"}) as app:
        proc = bastion("--spec", str(app.spec_path), "--url", app.base_url, "--auth", str(identities(tmp_path)),
                       "--max-rps", "300", "--check", "API1-BOLA-READ", "--fail-on", "none")
    assert proc.returncode == 0, proc.stderr
    assert "API1-BOLA-READ" in proc.stdout and "API1:2023" in proc.stdout and "CWE-639" in proc.stdout
    assert "GET /orders/{orderId}" in proc.stdout
    assert 'Authorization: Bearer $BOB_TOKEN' in proc.stdout
    assert "Fix advice:" in proc.stdout and "1 finding(s): 1 high" in proc.stdout


def test_production_host_needs_yes() -> None:
    """A production-looking host is not scanned from a non-interactive shell without --yes (exit 2, nothing sent)."""
    proc = bastion("--spec", "missing.yaml", "--url", "https://api.example.com/v1")
    assert proc.returncode == 2
    assert "api.example.com looks like a production host; pass --yes" in proc.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    """Bad identities files, unknown checks, malformed headers and URLs are reported precisely with exit 2."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("identities:\n  - name: alice\n    role: boss\n    headers: {X-Key: k}\n", encoding="utf-8")
    proc = bastion("--spec", "x.yaml", "--url", "http://127.0.0.1:9/v2", "--auth", str(bad))
    assert proc.returncode == 2 and f"{bad}:3: identities[0].role: expected user or admin" in proc.stderr
    proc = bastion("--spec", "x.yaml", "--url", "http://127.0.0.1:9/v2", "--check", "NOPE")
    assert proc.returncode == 2 and "unknown check(s): NOPE" in proc.stderr
    proc = bastion("--spec", "x.yaml", "--url", "http://127.0.0.1:9/v2", "--header", "nocolon")
    assert proc.returncode == 2 and "expected 'Name: value'" in proc.stderr
    proc = bastion("--spec", "x.yaml", "--url", "ftp://127.0.0.1/")
    assert proc.returncode == 2 and "--url must be an http:// or https:// URL" in proc.stderr
    proc = bastion("--spec", str(tmp_path / "missing.yaml"), "--url", "http://127.0.0.1:9/v2")
    assert proc.returncode == 2 and "file not found" in proc.stderr


def test_failed_login_exits_2(tmp_path: Path) -> None:
    """A login flow the API refuses stops the scan with exit 2 and names the identity."""
    ids = tmp_path / "ids.yaml"
    ids.write_text("- {name: eve, login: {operation: login, body: {username: alice, password: wrong}}}\n")
    with serve_vulnapp(()) as app:
        proc = bastion("--spec", str(app.spec_path), "--url", app.base_url, "--auth", str(ids), "--check",
                       "API2-NO-AUTH")
    assert proc.returncode == 2
    assert "identity eve: login with POST /auth/login failed (HTTP 401: " in proc.stderr
    assert "Invalid username or password." in proc.stderr


def test_docs_list_every_check() -> None:
    """docs/tester.md has a row for every registered check, with its category and CWE."""
    from bastion.tester.scan.registry import ALL_CHECKS

    text = (Path(__file__).resolve().parents[3] / "docs" / "tester.md").read_text(encoding="utf-8")
    for check in ALL_CHECKS:
        info = check.info
        assert f"| `{info.id}` | {info.category} | {info.cwe_id} |" in text, info.id


def test_progress_is_shown_on_a_terminal(tmp_path: Path) -> None:
    """With standard error on a terminal (a pseudo-terminal here), the scan shows its progress there — the
    running check with the requests sent and findings so far — while the report still goes to standard output."""
    import os
    import pty
    import select

    master, terminal = pty.openpty()
    env = {"ALICE_PASSWORD": "alice-pass-8f3k", "PATH": "/usr/bin:/bin", "BASTION_PURE_PYTHON": "1",
           "TERM": "xterm", "COLUMNS": "200"}
    shown = b""
    with serve_vulnapp({"bola"}) as app:
        proc = subprocess.Popen([sys.executable, "-m", "bastion", "scan", "--spec", str(app.spec_path), "--url",
                                 app.base_url, "--auth", str(identities(tmp_path)), "--max-rps", "10", "--check",
                                 "API1-BOLA-READ", "--fail-on", "none"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal, env=env)
        os.close(terminal)
        try:
            while select.select([master], [], [], 120)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the scan exited and closed the terminal
                    break
                if not data:
                    break
                shown += data
            report = proc.communicate(timeout=60)[0].decode()
        finally:
            os.close(master)
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0
    text = shown.decode("utf-8", "replace")
    assert "API1-BOLA-READ (" in text and " requests, " in text and " findings)" in text, text
    assert "API1-BOLA-READ" in report and "API1-BOLA-READ (" not in report
