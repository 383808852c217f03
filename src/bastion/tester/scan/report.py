"""Scan reports: JSON, SARIF 2.1.0, JUnit XML and a self-contained HTML page.

Every report shows evidence with secrets redacted: the scan identities' credentials become
placeholders (``$ALICE_TOKEN``) that the curl commands also use, so a reader can reproduce a
finding by exporting their own values; Authorization, Cookie, Set-Cookie and API-key headers,
JWT signatures, and password/secret/token/hash-named values in bodies and URLs are masked.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bastion import __version__
from bastion.tester.audit.interface import OWASP_API_2023, Severity
from bastion.tester.audit.report import SARIF_LEVEL, SARIF_SCHEMA, SECURITY_SEVERITY
from bastion.tester.scan.cleanup import cleanup_json, cleanup_notes
from bastion.tester.scan.engine import ScanResult
from bastion.tester.scan.health import summary as health_summary
from bastion.tester.scan.interface import CheckInfo, Exchange, ScanFinding

EXCERPT = 2000
#: Request bodies larger than this are not embedded in curl commands (they are generated or named instead).
MAX_CURL_BODY = 8192
MASK = "<redacted>"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key",
                            "x-auth-token", "x-access-token"})
SECRET_NAME = re.compile(r"pass(word|wd)?|secret|token|api[-_]?key|apikey|hash|credential|private[-_]?key|session",
                         re.IGNORECASE)
JWT = re.compile(r"\b(eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)\.([A-Za-z0-9_-]{8,})")
#: ``"password": "x"``, ``password=x`` in non-JSON text.
KEY_VALUE = re.compile(
    r"""(?P<key>["']?[\w-]*(?:pass(?:word|wd)?|secret|token|api[-_]?key|hash)[\w-]*["']?\s*[:=]\s*["']?)"""
    r"""(?P<value>(?!\$[A-Z])[^"'&\s,}<]{4,})""",
    re.IGNORECASE,
)


class Redactor:
    """Replaces credentials by placeholders and masks secret-looking values."""

    def __init__(self, secrets: dict[str, str]) -> None:
        # Longest first, so a token is replaced before a shorter secret inside it.
        self.secrets = sorted(secrets.items(), key=lambda kv: -len(kv[0]))

    def known(self, text: str) -> str:
        for value, placeholder in self.secrets:
            if value:
                text = text.replace(value, placeholder)
        return text

    def text(self, text: str) -> str:
        text = self.known(text)
        text = JWT.sub(lambda m: f"{m.group(1)}.{MASK}", text)
        return KEY_VALUE.sub(lambda m: m.group("key") + _mask(m.group("value"), "hash" in m.group("key").lower()),
                             text)

    def header(self, name: str, value: str) -> str:
        value = self.known(value)
        if name.lower() in SECRET_HEADERS and "$" not in value:
            if name.lower() in ("cookie", "set-cookie"):
                return re.sub(r"(^|;\s*)([^=;\s]+)=([^;]*)", lambda m: f"{m.group(1)}{m.group(2)}={MASK}", value)
            scheme, sep, rest = value.partition(" ")
            if sep and scheme.lower() in ("bearer", "basic", "token", "digest"):
                jwt = JWT.fullmatch(rest)
                return f"{scheme} {jwt.group(1)}.{MASK}" if jwt else f"{scheme} {MASK}"
            return MASK if not value.startswith("eyJ") else self.text(value)
        return self.text(value)

    def url(self, url: str) -> str:
        url = self.known(url)
        parts = urlsplit(url)
        if not parts.query:
            return url
        pairs = [(k, v if "$" in v or not SECRET_NAME.search(k) else MASK) for k, v in
                 parse_qsl(parts.query, keep_blank_values=True)]
        query = urlencode(pairs, safe="$<>/:")
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _mask(value: str, keep_prefix: bool) -> str:
    """A hash keeps its first 4 characters (``$2b$``: shows what kind it was); anything else is masked whole."""
    return (value[:4] + "…" + MASK) if keep_prefix and len(value) >= 12 else MASK


def _excerpt(body: bytes) -> str:
    text = body[:EXCERPT].decode("utf-8", "replace")
    return text + (f"… ({len(body)} bytes)" if len(body) > EXCERPT else "")


def _dq(text: str) -> str:
    """Double-quote for a POSIX shell, leaving ``$PLACEHOLDER`` expandable."""
    escaped = re.sub(r'(["\\`])', r"\\\1", text).replace("$", "\\$")
    return '"' + re.sub(r"\\\$([A-Z][A-Z0-9_]*)", r"$\1", escaped) + '"'


def curl(exchange: Exchange, redactor: Redactor) -> str:
    """A curl command that repeats the request (credentials as ``$PLACEHOLDER`` shell variables)."""
    parts = ["curl", "-sS", "-i", "-X", exchange.method]
    for name, value in exchange.request_headers:
        if name.lower() in ("user-agent", "content-length", "host"):
            continue
        parts += ["-H", _dq(f"{name}: {redactor.header(name, value)}")]
    if len(exchange.request_body) > MAX_CURL_BODY:
        parts += ["--data-binary", _large_body(exchange.request_body)]
    elif exchange.request_body:
        parts += ["--data-binary", _dq(redactor.text(exchange.request_body.decode("utf-8", "replace")))]
    parts.append(_dq(redactor.url(exchange.url)))
    return " ".join(parts)


def _large_body(body: bytes) -> str:
    """A body too large to embed (a probe of 1 MiB): a command that generates it when it repeats a short
    pattern, else a file name for the reader to fill, with its size and start."""
    for period in range(1, 65):
        pattern = body[:period]
        if (pattern * (len(body) // period + 1))[: len(body)] == body and pattern.isascii() \
                and pattern.decode().isprintable() and "'" not in pattern.decode():
            count, rest = divmod(len(body), period)
            tail = f"+{json.dumps(pattern[:rest].decode())}" if rest else ""
            return f"\"$(python3 -c 'import sys; sys.stdout.write({json.dumps(pattern.decode())}*{count}{tail})')\""
    return f"@request-body.bin  # {len(body)} bytes, starting {body[:80]!r}"


def reproducer(finding: ScanFinding) -> Exchange:
    """The request that shows the flaw: the last one, unless it only reads back what an earlier write did (a
    mass assignment's read-back, a deleted object's 404), then that write."""
    evidence = finding.evidence
    last = evidence[-1]
    if last.method in ("GET", "HEAD"):
        writes = [e for e in evidence[:-1] if e.method in ("POST", "PUT", "PATCH", "DELETE")]
        if writes:
            return writes[-1]
    return last


def reproducers(finding: ScanFinding) -> list[Exchange]:
    """The requests that show the flaw: both of a comparison (``finding.reproduce``), else :func:`reproducer`."""
    if finding.reproduce > 1 and len(finding.evidence) >= finding.reproduce:
        return list(finding.evidence[-finding.reproduce:])
    return [reproducer(finding)]


def reproduce_commands(finding: ScanFinding, redactor: Redactor) -> str:
    """The curl command(s) that reproduce ``finding``, one a line (a pair for a comparison)."""
    return "\n".join(curl(e, redactor) for e in reproducers(finding))


def exchange_json(exchange: Exchange, redactor: Redactor) -> dict[str, Any]:
    return {
        "identity": exchange.identity,
        "request": {
            "method": exchange.method,
            "url": redactor.url(exchange.url),
            "headers": [[k, redactor.header(k, v)] for k, v in exchange.request_headers],
            "body": redactor.text(_excerpt(exchange.request_body)),
        },
        "response": {
            "status": exchange.status,
            "headers": [[k, redactor.header(k, v)] for k, v in exchange.response_headers],
            "body": redactor.text(_excerpt(exchange.response_body)),
        },
        "elapsed_ms": round(exchange.elapsed * 1000, 1),
        "error": exchange.error,
        "curl": curl(exchange, redactor),
    }


def severity_counts(findings: list[ScanFinding]) -> dict[str, int]:
    counts = Counter(f.severity for f in findings)
    return {s.label: counts.get(s, 0) for s in sorted(Severity, reverse=True)}


def worst(findings: list[ScanFinding]) -> Severity | None:
    return max((f.severity for f in findings), default=None)


def _check_json(info: CheckInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "title": info.title,
        "category": info.category,
        "category_title": OWASP_API_2023[info.category],
        "cwe": info.cwe_id,
        "severity": info.severity.label,
        "phase": info.phase,
        "checks": info.checks,
        "advice": info.advice,
        "destructive": info.destructive,
    }


def safety_json(result: ScanResult) -> dict[str, Any]:
    """What the scan held back (never called) and what the safety gate refused, for every report format."""
    return {
        "held_back": [{"operation": v.op.label, "operation_id": v.op.node.get("operationId"), "reason": v.reason}
                      for v in result.held_back],
        "destructive": [v.op.label for v in result.verdicts if v.safety == "destructive"],
        "refused_requests": dict(result.refused),
    }


def health_json(result: ScanResult) -> dict[str, Any]:
    """The health watch's verdict: healthy, or what broke after which check and whether the scan stopped."""
    status = "stopped" if result.stopped else ("degraded" if result.health else "healthy")
    return {
        "status": status,
        "summary": health_summary(result.health),
        "checks": result.health_checks,
        "events": [{"after": e.after, "message": e.message, "stopped": e.stopped} for e in result.health],
    }


def to_json(result: ScanResult) -> dict[str, Any]:
    """The scan as a JSON-ready mapping (evidence redacted)."""
    redactor = Redactor(result.secrets)
    counts = Counter(f.check.id for f in result.every_finding)
    return {
        "tool": {"name": "bastion scan", "version": __version__},
        "target": result.base_url,
        "spec": result.spec_file,
        "identities": result.identities,
        "duration_s": round(result.duration, 2),
        "requests": result.exchanges,
        "summary": severity_counts(result.findings),
        "checks": [{**_check_json(c), "count": counts.get(c.id, 0)} for c in result.ran],
        "skipped": [{"id": s.check.id, "reason": s.reason} for s in result.skips],
        "notes": list(result.notes),
        "health": health_json(result),
        "safety": safety_json(result),
        "cleanup": cleanup_json(result.cleanup),
        "findings": [
            {
                "check_id": f.check.id,
                "title": f.check.title,
                "severity": f.severity.label,
                "category": f.check.category,
                "category_title": OWASP_API_2023[f.check.category],
                "cwe": f.check.cwe_id,
                "target": f.target,
                "message": redactor.text(f.message),
                "advice": f.check.advice,
                "evidence": [exchange_json(e, redactor) for e in f.evidence],
                "curl": reproduce_commands(f, redactor) if f.evidence else None,
                "proofs": [proof_json(p, redactor) for p in f.proofs],
            }
            for f in result.findings
        ],
    }


def proof_json(proof: ScanFinding, redactor: Redactor) -> dict[str, Any]:
    """A finding folded into another (same root cause): what it showed, its evidence and its curl command."""
    return {
        "check_id": proof.check.id,
        "title": proof.check.title,
        "target": proof.target,
        "message": redactor.text(proof.message),
        "evidence": [exchange_json(e, redactor) for e in proof.evidence],
        "curl": reproduce_commands(proof, redactor) if proof.evidence else None,
    }


def _camel(title: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", title) if w)


def _rules(result: ScanResult) -> list[CheckInfo]:
    rules = list(result.ran)
    for f in result.findings:
        if all(r.id != f.check.id for r in rules):
            rules.append(f.check)
    return rules


def to_sarif(result: ScanResult) -> dict[str, Any]:
    """The scan as a SARIF 2.1.0 log: one rule per check (OWASP category and CWE in properties, tags and a CWE
    taxonomy), one result per finding located at the request URL."""
    redactor = Redactor(result.secrets)
    rules = _rules(result)
    index = {r.id: i for i, r in enumerate(rules)}
    cwes = sorted({r.cwe for r in rules})
    driver_rules = [
        {
            "id": r.id,
            "name": _camel(r.title),
            "shortDescription": {"text": r.title},
            "fullDescription": {"text": r.checks},
            "help": {"text": r.advice},
            "defaultConfiguration": {"level": SARIF_LEVEL[r.severity]},
            "relationships": [{"target": {"id": str(r.cwe), "toolComponent": {"name": "CWE"}},
                               "kinds": ["superset"]}],
            "properties": {
                "owasp": r.category,
                "owasp-title": OWASP_API_2023[r.category],
                "cwe": r.cwe_id,
                "severity": r.severity.label,
                "security-severity": SECURITY_SEVERITY[r.severity],
                "tags": ["security", r.category, f"OWASP-{r.category}", f"external/cwe/cwe-{r.cwe}"],
            },
        }
        for r in rules
    ]
    results: list[dict[str, Any]] = []
    for f in result.findings:
        url = redactor.url(reproducer(f).url) if f.evidence else result.base_url
        entry: dict[str, Any] = {
            "ruleId": f.check.id,
            "ruleIndex": index[f.check.id],
            "level": SARIF_LEVEL[f.severity],
            "message": {"text": f"{redactor.text(f.message)} ({f.check.category} {OWASP_API_2023[f.check.category]})"},
            "locations": [{
                "physicalLocation": {"artifactLocation": {"uri": url}},
                "logicalLocations": [{"fullyQualifiedName": f.target, "kind": "function"}],
            }],
            "taxa": [{"id": str(f.check.cwe), "toolComponent": {"name": "CWE"}}],
            "properties": {
                "owasp": f.check.category,
                "cwe": f.check.cwe_id,
                "severity": f.severity.label,
                "target": f.target,
            },
        }
        if f.evidence:
            entry["properties"]["curl"] = reproduce_commands(f, redactor)
        if f.proofs:
            entry["properties"]["proofs"] = [
                {"check": p.check.id, "target": p.target, "message": redactor.text(p.message),
                 "curl": reproduce_commands(p, redactor) if p.evidence else None} for p in f.proofs]
        results.append(entry)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "bastion-scan", "version": __version__,
                                    "informationUri": "https://owasp.org/API-Security/editions/2023/en/0x11-t10/",
                                    "rules": driver_rules}},
                "taxonomies": [{"name": "CWE", "organization": "MITRE",
                                "taxa": [{"id": str(c), "name": f"CWE-{c}"} for c in cwes]}],
                "results": results,
                "invocations": [{"executionSuccessful": result.stopped is None,
                                 "toolExecutionNotifications": [
                                     {"level": "error" if e.stopped else "warning",
                                      "message": {"text": f"target health: after {e.after}: {e.message}"}}
                                     for e in result.health] + [
                                     {"level": "note", "message": {"text": f"{s.check.id} skipped: {s.reason}"}}
                                     for s in result.skips] + [
                                     {"level": "note", "message": {"text": f"held back {v.op.label}: {v.reason}"}}
                                     for v in result.held_back] + [
                                     {"level": "note", "message": {"text": note}} for note in result.notes]}],
                "properties": {"target": result.base_url, "requests": result.exchanges},
            }
        ],
    }


def to_junit(result: ScanResult) -> str:
    """JUnit XML: one test case per check and target; findings are failures, skips are skipped."""
    redactor = Redactor(result.secrets)
    suite = ET.Element("testsuite", name="bastion scan", hostname=urlsplit(result.base_url).netloc)
    cases = 0
    failures = 0
    skipped = 0
    # A check whose finding was folded into another's (one root cause) still fails, naming its root.
    root_of = {id(p): f for f in result.findings for p in f.proofs}  # proof -> the finding it is folded into
    for info in result.ran:
        found = [f for f in result.every_finding if f.check.id == info.id]
        for f in found:
            case = ET.SubElement(suite, "testcase", classname=f"{info.category}.{info.id}", name=f.target)
            failure = ET.SubElement(case, "failure", message=redactor.text(f.message), type=f.severity.label)
            lines = [f"{info.title} ({info.category} {OWASP_API_2023[info.category]}, {info.cwe_id})",
                     redactor.text(f.message), f"Fix: {info.advice}"]
            folded_into = root_of.get(id(f))
            if folded_into is not None:
                lines.insert(2, f"Same flaw as {folded_into.check.id} on {folded_into.target} (one root cause).")
            if f.evidence:
                lines.append("Reproduce: " + reproduce_commands(f, redactor))
            failure.text = "\n".join(lines)
            cases += 1
            failures += 1
        if not found:
            ET.SubElement(suite, "testcase", classname=f"{info.category}.{info.id}", name="all targets")
            cases += 1
    for skip in result.skips:
        case = ET.SubElement(suite, "testcase", classname=f"{skip.check.category}.{skip.check.id}",
                             name="skipped")
        ET.SubElement(case, "skipped", message=skip.reason)
        cases += 1
        skipped += 1
    for verdict in result.held_back:
        case = ET.SubElement(suite, "testcase", classname="safety.held-back", name=verdict.op.label)
        ET.SubElement(case, "skipped", message=verdict.reason)
        cases += 1
        skipped += 1
    if result.cleanup:  # what the scan created, removed and left, as the case's output
        case = ET.SubElement(suite, "testcase", classname="cleanup", name="what the scan created")
        ET.SubElement(case, "system-out").text = "\n".join(cleanup_notes(result.cleanup))
        cases += 1
    errors = 0
    health = ET.SubElement(suite, "testcase", classname="health", name="target health")
    cases += 1
    if result.health:
        ET.SubElement(health, "error", message=health_summary(result.health), type="target-broken")
        errors += 1
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    suite.set("time", f"{result.duration:.3f}")
    root = ET.Element("testsuites", name="bastion scan", tests=str(cases), failures=str(failures),
                      errors=str(errors), skipped=str(skipped), time=f"{result.duration:.3f}")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>bastion scan of {{ data.target }}</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1.5em;color:#1d232b}
h1{font-size:1.5em;margin-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #ddd}
.meta{color:#555} table{border-collapse:collapse;margin:1em 0} td,th{padding:.3em .7em;border:1px solid #ddd;
text-align:left;vertical-align:top} .sev{font-weight:bold;padding:.1em .5em;border-radius:3px;color:#fff}
.critical{background:#7b1020}.high{background:#c0392b}.medium{background:#d68910}.low{background:#2e86c1}
.info{background:#7f8c8d} .finding{border:1px solid #ddd;border-radius:6px;padding:.8em 1em;margin:1em 0}
.finding h3{margin:.2em 0} pre{background:#f5f6f8;padding:.6em;overflow-x:auto;white-space:pre-wrap;
word-break:break-all;font-size:13px} details{margin:.4em 0} .ok{color:#1e8449;font-weight:bold}
</style>
</head>
<body>
<h1>bastion scan report</h1>
<p class="meta">Target <code>{{ data.target }}</code> &middot; document <code>{{ data.spec }}</code> &middot;
identities: {{ data.identities | join(", ") or "none (anonymous only)" }} &middot; {{ data.requests }} requests in
{{ data.duration_s }} s &middot; bastion {{ data.tool.version }}</p>
{% if data.health.events %}<div class="finding"><h3><span class="sev high">target health</span>
{{ data.health.status }}</h3><ul>{% for e in data.health.events %}<li>after <code>{{ e.after }}</code>: {{ e.message }}
{% if e.stopped %}<strong>(the scan stopped here)</strong>{% endif %}</li>{% endfor %}</ul></div>{% endif %}
<h2>Summary</h2>
<table><tr>{% for sev, n in data.summary.items() %}<th><span class="sev {{ sev }}">{{ sev }}</span></th>{% endfor %}
</tr><tr>{% for sev, n in data.summary.items() %}<td>{{ n }}</td>{% endfor %}</tr></table>
{% if not data.findings %}<p class="ok">No findings.</p>{% endif %}
{% if data.findings %}<h2>Findings ({{ data.findings | length }})</h2>{% endif %}
{% for f in data.findings %}
<div class="finding">
<h3><span class="sev {{ f.severity }}">{{ f.severity }}</span> {{ f.title }}</h3>
<table>
<tr><th>Check</th><td><code>{{ f.check_id }}</code></td></tr>
<tr><th>Category</th><td>{{ f.category }} {{ f.category_title }}</td></tr>
<tr><th>CWE</th><td>{{ f.cwe }}</td></tr>
<tr><th>Target</th><td><code>{{ f.target }}</code></td></tr>
<tr><th>What happened</th><td>{{ f.message }}</td></tr>
<tr><th>Fix</th><td>{{ f.advice }}</td></tr>
</table>
{% if f.curl %}<p>Reproduce (export the <code>$…</code> variables with your own credentials first):</p>
<pre>{{ f.curl }}</pre>{% endif %}
{% for p in f.proofs %}
<details><summary>Also shown by <code>{{ p.check_id }}</code> ({{ p.title }}) on <code>{{ p.target }}</code></summary>
<p>{{ p.message }}</p>{% if p.curl %}<pre>{{ p.curl }}</pre>{% endif %}</details>
{% endfor %}
{% for e in f.evidence %}
<details{% if loop.last %} open{% endif %}><summary>Evidence {{ loop.index }}: {{ e.request.method }}
{{ e.request.url }} as {{ e.identity }} &rarr; {{ e.response.status }}{% if e.error %} ({{ e.error }}){% endif %}
({{ e.elapsed_ms }} ms)</summary>
<pre>{{ e.request.method }} {{ e.request.url }}
{% for h in e.request.headers %}{{ h[0] }}: {{ h[1] }}
{% endfor %}
{{ e.request.body }}</pre>
<pre>HTTP {{ e.response.status }}
{% for h in e.response.headers %}{{ h[0] }}: {{ h[1] }}
{% endfor %}
{{ e.response.body }}</pre>
</details>
{% endfor %}
</div>
{% endfor %}
<h2>Checks that ran ({{ data.checks | length }})</h2>
<table><tr><th>Check</th><th>Category</th><th>CWE</th><th>Severity</th><th>Findings</th><th>What it checks</th></tr>
{% for c in data.checks %}<tr><td><code>{{ c.id }}</code></td><td>{{ c.category }}</td><td>{{ c.cwe }}</td>
<td>{{ c.severity }}</td><td>{{ c.count }}</td><td>{{ c.checks }}</td></tr>
{% endfor %}</table>
<h2>Target health</h2>
<p>{{ data.health.summary }} ({{ data.health.checks }} health check(s)).</p>
<h2>Identities</h2>
<p>{{ data.identities | join(", ") or "none: anonymous requests only" }}</p>
{% if data.safety.held_back %}<h2>Held back: never called ({{ data.safety.held_back | length }})</h2>
<table><tr><th>Operation</th><th>Why</th></tr>
{% for h in data.safety.held_back %}<tr><td><code>{{ h.operation }}</code></td><td>{{ h.reason }}</td></tr>
{% endfor %}</table>{% endif %}
{% if data.cleanup is defined and data.cleanup.resources %}<h2>Created by the scan ({{ data.cleanup.created }};
removed {{ data.cleanup.removed }}, left {{ data.cleanup.left }})</h2>
<table><tr><th>Created by</th><th>Identity</th><th>Resource</th><th>Outcome</th><th>How, or why not</th></tr>
{% for c in data.cleanup.resources %}<tr><td><code>{{ c.created_by }}</code></td><td>{{ c.identity }}</td>
<td><code>{{ c.resource or "-" }}</code></td><td>{{ c.outcome }}</td><td>{{ c.detail }}</td></tr>{% endfor %}
</table>{% endif %}
{% if data.notes %}<h2>Notes</h2>
<ul>{% for n in data.notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
{% if data.skipped %}<h2>Skipped ({{ data.skipped | length }})</h2>
<table><tr><th>Check</th><th>Reason</th></tr>
{% for s in data.skipped %}<tr><td><code>{{ s.id }}</code></td><td>{{ s.reason }}</td></tr>{% endfor %}
</table>{% endif %}
</body>
</html>
"""


def to_html(result: ScanResult) -> str:
    """One self-contained page (inline CSS, no scripts, no external assets); everything escaped."""
    return html_from_json(to_json(result))


def html_from_json(data: dict[str, Any]) -> str:
    """The HTML page of a scan's JSON report (:func:`to_json`, as ``--format json`` writes it):
    how the dashboard shows a report read back from a file."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(HTML_TEMPLATE).render(data=data)
