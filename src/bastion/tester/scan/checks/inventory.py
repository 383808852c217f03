"""API9:2023 Improper Inventory Management: other API versions, undocumented endpoints, spec drift.

Heuristics:

* *Sibling versions*: when a segment of the base path is a version (``v2``, ``v2.1``), the
  neighbouring versions (``v1``, ``v0``, ``v3``...) not listed in the document's ``servers`` are
  tried with the paths of up to three GET operations of the document; a 2xx answer that differs
  from that version's answer for a random path is a finding (one per version). When the base path
  has none but the paths start with one (``/v2/orders`` next to ``/v1/...``), the newest version's
  GET paths are tried under its neighbours, except paths the document declares there.
* *Undocumented endpoints*: a list of common internal paths (``/internal/export``, ``/admin``,
  ``/export``, ``/backup``, ``/metrics``...) and ``/<resource>/export``-style paths built from the
  document's own top-level path segments are requested under the base path; one the document
  does not declare that answers 2xx with content unlike the answer for a random path is a
  finding. Health probes (``/health``, ``/healthz``, ``/ready``, ``/live``, ``/ping``) are not
  findings.
* *Spec/server mismatch*: a declared GET operation that answers 405, or 404 when it has no path
  parameters (so no object can be missing), twice, is a finding.
"""

from __future__ import annotations

import re

from bastion.tester.audit.context import Operation
from bastion.tester.audit.interface import Severity
from bastion.tester.scan.checks.probing import caller, declared_path, finding, normalized, random_marker, skip, success
from bastion.tester.scan.interface import Check, CheckInfo, Exchange, Identity, ScanContext, ScanFinding, Skip

__all__ = ["CHECKS", "OldVersions", "SpecMismatch", "UndocumentedEndpoints", "sibling_versions"]

_VERSION = re.compile(r"^(v)(\d+)((?:\.\d+)*)$", re.IGNORECASE)
MAX_OPERATIONS_PER_VERSION = 3
HEALTH = re.compile(r"/(?:health|healthz|healthcheck|ready|readyz|live|livez|ping)$")
COMMON_PATHS = (
    "/internal", "/internal/export", "/internal/users", "/internal/config", "/internal/debug", "/internal/metrics",
    "/internal/status", "/admin", "/admin/export", "/admin/config", "/export", "/export/users", "/backup",
    "/backups", "/dump", "/private", "/test", "/dev", "/beta", "/legacy", "/old", "/graphql", "/metrics",
    "/status", "/stats",
)
RESOURCE_SUFFIXES = ("/export", "/all", "/dump")
MAX_RESOURCES = 5

OLD_VERSION = CheckInfo(
    id="API9-OLD-VERSION",
    title="Undocumented API version still served",
    category="API9:2023",
    cwe=1059,
    severity=Severity.MEDIUM,
    phase="inventory",
    checks="Requests the document's GET paths under neighbouring versions of the base path (/v1 next to /v2), or of "
    "the paths' first segment when the base path has none (/v1/orders next to a documented /v2/orders); an answer "
    "other than the not-found one is a finding.",
    advice="Retire old versions (or document and secure them like the current one). Bastion's routes derived "
    "from the OpenAPI document deny every undeclared path and method (404/405), so only the documented version "
    "is reachable through it.",
)

UNDOCUMENTED = CheckInfo(
    id="API9-UNDOCUMENTED-ENDPOINT",
    title="Undocumented endpoint",
    category="API9:2023",
    cwe=1059,
    severity=Severity.MEDIUM,
    phase="inventory",
    checks="Probes common internal paths (/internal/export, /admin, /export, /backup, /metrics...) under the base "
    "path; a path the document does not declare that answers with content is a finding.",
    advice="Remove endpoints that are not part of the API, or document them so they get reviewed and secured. "
    "Bastion's routes derived from the OpenAPI document deny every undeclared path and method (404/405).",
)

MISMATCH = CheckInfo(
    id="API9-SPEC-MISMATCH",
    title="Documented operation not served",
    category="API9:2023",
    cwe=1059,
    severity=Severity.LOW,
    phase="inventory",
    checks="Calls declared GET operations; 405, or 404 on a path without parameters, twice, means the document "
    "and the deployment disagree.",
    advice="Keep the OpenAPI document in step with the deployment (generate one from the other, or test the "
    "deployment against the document in CI); an outdated document hides what is really exposed. "
    "`bastion audit` reviews the document itself.",
)


def sibling_versions(base: str) -> list[str]:
    """Base paths of neighbouring versions: ``/api/v2`` -> ``/api/v1``, ``/api/v0``, ``/api/v3``."""
    segments = base.split("/")
    for i, segment in enumerate(segments):
        match = _VERSION.match(segment)
        if match is None:
            continue
        number = int(match.group(2))
        others = [n for n in (number - 1, number - 2, number - 3, number + 1) if n >= 0]
        if match.group(3):  # v2.1 -> v2 as well
            others.insert(0, number)
        out = []
        for n in others:
            seg = f"{match.group(1)}{n}"
            if seg != segment:
                out.append("/".join([*segments[:i], seg, *segments[i + 1:]]))
        return list(dict.fromkeys(out))
    return []


def _documented_servers(ctx: ScanContext) -> set[str]:
    from urllib.parse import urlsplit

    servers = ctx.spec.data.get("servers")
    out: set[str] = set()
    for server in servers if isinstance(servers, list) else []:
        if isinstance(server, dict) and isinstance(server.get("url"), str):
            out.add(urlsplit(server["url"]).path.rstrip("/"))
    return out


async def _not_found(ctx: ScanContext, prefix: str, ident: Identity, info: CheckInfo) -> tuple[Exchange, str]:
    path = prefix + "/" + random_marker("no-such-path-")
    return await ctx.raw("GET", ctx.origin + path, ident, check=info), path


def _distinct(ex: Exchange, path: str, baseline: Exchange, baseline_path: str) -> bool:
    """A 2xx answer with content that is not the answer for a random path (a soft 404)."""
    if not success(ex) or not ex.response_body.strip():
        return False
    return not success(baseline) or normalized(ex, [path]) != normalized(baseline, [baseline_path])


def _path_version(ctx: ScanContext) -> str:
    """The newest version segment the document's paths start with (``/v2/...`` next to ``/v1/...``), or ""."""
    found: dict[tuple[int, str], str] = {}
    for op in ctx.spec.operations:
        first = op.template.lstrip("/").split("/", 1)[0]
        match = _VERSION.match(first)
        if match is not None:
            found[(int(match.group(2)), match.group(3))] = first
    return found[max(found)] if found else ""


class OldVersions(Check):
    """Neighbouring API versions that still answer."""

    info = OLD_VERSION

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        siblings = [s for s in sibling_versions(ctx.base_path) if s not in _documented_servers(ctx)]
        current = ""  # the version segment the paths start with, when the base path has none
        if not siblings:
            current = _path_version(ctx)
            siblings = [ctx.base_path + s for s in sibling_versions("/" + current)] if current else []
        if not siblings:
            return [skip(self.info, f"neither the base path {ctx.base_path or '/'!r} nor the paths' first segment "
                                    "is a version")]
        gets = sorted((o for o in ctx.operations() if o.method == "get"
                       and (not current or o.template.startswith(f"/{current}/"))),
                      key=lambda o: ("{" in o.template, len(o.template)))[:MAX_OPERATIONS_PER_VERSION]
        if not gets:
            return [skip(self.info, "no GET operation in scope to request under other versions")]
        out: list[ScanFinding | Skip] = []
        for sibling in siblings:
            ident = caller(ctx, gets[0])
            baseline, baseline_path = await _not_found(ctx, sibling, ident, self.info)
            for op in gets:
                ident = caller(ctx, op)
                path = sibling + ctx.plan(op, ident).path[len(current) + 1 if current else 0:]
                if current and declared_path(ctx.spec, ctx.base_path, path):
                    continue  # a documented operation of that version: the other checks call it
                ex = await ctx.raw("GET", ctx.origin + path, ident, check=self.info)
                if _distinct(ex, path, baseline, baseline_path):
                    out.append(finding(self.info, sibling,
                                       f"`{sibling}` is not in the document but `GET {path}` answers {ex.status} "
                                       f"like `{op.label}` does: an older or unreleased version is still served.",
                                       ex))
                    break
        return out


class UndocumentedEndpoints(Check):
    """Common internal paths under the base path that answer."""

    info = UNDOCUMENTED

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        ident = ctx.users[0] if ctx.users else ctx.anonymous
        base = ctx.base_path
        resources = list(dict.fromkeys(
            seg for seg in (o.template.strip("/").split("/")[0] for o in ctx.spec.operations)
            if seg and "{" not in seg))[:MAX_RESOURCES]
        candidates = list(COMMON_PATHS) + [f"/{r}{s}" for r in resources for s in RESOURCE_SUFFIXES]
        baseline, baseline_path = await _not_found(ctx, base, ident, self.info)
        out: list[ScanFinding | Skip] = []
        for rel in dict.fromkeys(candidates):
            full = base + rel
            if HEALTH.search(rel) or declared_path(ctx.spec, base, full):
                continue
            ex = await ctx.raw("GET", ctx.origin + full, ident, check=self.info)
            if _distinct(ex, full, baseline, baseline_path):
                out.append(finding(self.info, f"GET {full}",
                                   f"`{full}` is not in the document but answers {ex.status} with "
                                   f"{len(ex.response_body)} bytes (an unknown path answers {baseline.status}).", ex))
        return out


class SpecMismatch(Check):
    """Declared operations the server does not serve."""

    info = MISMATCH

    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        out: list[ScanFinding | Skip] = []
        gets = [o for o in ctx.operations() if o.method == "get"]
        if not gets:
            return [skip(self.info, "no GET operation in scope")]
        for op in gets:
            ident = caller(ctx, op)
            plan = ctx.plan(op, ident)
            first = await ctx.send(plan, ident, check=self.info)
            if not self._missing(op, first):
                continue
            second = await ctx.send(plan, ident, check=self.info)
            if self._missing(op, second):
                out.append(finding(self.info, op.label,
                                   f"The document declares {op.label} but the server answers {second.status} "
                                   f"(twice) for `{plan.path}`.", second))
        return out

    @staticmethod
    def _missing(op: Operation, ex: Exchange) -> bool:
        return ex.status == 405 or (ex.status == 404 and "{" not in op.template)


CHECKS: list[Check] = [OldVersions(), UndocumentedEndpoints(), SpecMismatch()]
