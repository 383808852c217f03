"""Run a scan: log the identities in, discover objects, run the checks phase by phase.

:class:`Scan` is the :class:`ScanContext` checks use. :func:`run_scan` is the whole scan:

1. **login** — each configured identity gets its credentials (static headers, or a login flow);
2. **discovery** — each user (and the admin) creates one object through every "create" operation
   (a POST to a collection that has an item path ``/things/{id}``) and lists collections, so
   later checks know which object IDs belong to whom (:meth:`Scan.created`);
3. **checks** — in phase order; a check that needs more users, an admin, or
   ``--allow-destructive`` is skipped with the reason, and one that fails is reported as skipped
   with its error (never silently dropped).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from bastion.tester.audit.context import Spec, load_spec
from bastion.tester.scan.canary import CanaryListener
from bastion.tester.scan.checks.misconfig import VERBOSE
from bastion.tester.scan.cleanup import Removal, cleanup_notes, remove_created
from bastion.tester.scan.client import ScanClient
from bastion.tester.scan.context import Progress, Scan, ScanError, is_destructive
from bastion.tester.scan.escalation import rerun_gated
from bastion.tester.scan.health import Baseline, HealthEvent
from bastion.tester.scan.identities import IdentityConfig
from bastion.tester.scan.interface import Check, CheckInfo, Identity, Phase, ScanFinding, ScanOptions, Skip
from bastion.tester.scan.login import (
    learn_own_ids,
    login,
    login_media_type,
    register_identity,
    secrets_of,
    signup_operation,
)
from bastion.tester.scan.objects import path_params
from bastion.tester.scan.safety import Verdict, find_operation

__all__ = ["PHASES", "Scan", "ScanError", "ScanResult", "find_operation", "is_destructive", "run_scan"]

PHASES: tuple[Phase, ...] = (
    "discovery",
    "authentication",
    "authorization",
    "properties",
    "resources",
    "injection",
    "misconfiguration",
    "inventory",
)

@dataclass
class ScanResult:
    """What a scan found, what it skipped (with reasons), and how much it sent."""

    base_url: str
    spec_file: str
    findings: list[ScanFinding] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    ran: list[CheckInfo] = field(default_factory=list)
    exchanges: int = 0
    duration: float = 0.0
    identities: list[str] = field(default_factory=list)
    #: Credential values to redact in reports, mapped to the placeholder shown instead.
    secrets: dict[str, str] = field(default_factory=dict)
    #: Things the reader should know about how the scan ran (e.g. a check's burst outside ``--max-rps``).
    notes: list[str] = field(default_factory=list)
    #: The safety classifier's verdict on every operation of the document (held back ones never called).
    verdicts: list[Verdict] = field(default_factory=list)
    #: What the health watch saw (empty: the target stayed healthy), and how many times it looked.
    health: list[HealthEvent] = field(default_factory=list)
    health_checks: int = 0
    #: Requests the safety gate refused to send, per check (a check tried to reach a held-back operation).
    refused: dict[str, int] = field(default_factory=dict)
    #: Each resource the scan created, and whether the cleanup at the end removed it (and how, or why not).
    cleanup: list[Removal] = field(default_factory=list)

    @property
    def held_back(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.safety == "held"]

    @property
    def every_finding(self) -> list[ScanFinding]:
        """Each finding followed by the findings folded into it (its proofs): what every check found."""
        return [g for f in self.findings for g in (f, *f.proofs)]

    @property
    def stopped(self) -> HealthEvent | None:
        """The health event that stopped the scan, if one did."""
        return next((e for e in self.health if e.stopped), None)


def skip_reason(info: CheckInfo, scan: Scan) -> str | None:
    if info.destructive and not scan.options.allow_destructive:
        return "destructive (changes or deletes data); run with --allow-destructive to enable"
    if len(scan.users) < info.needs_users:
        return f"needs {info.needs_users} user identities (--auth with {info.needs_users} users), got {len(scan.users)}"
    if info.needs_admin and scan.admin is None:
        return "needs an admin identity (role: admin in the --auth file)"
    return None


async def scan_async(
    spec: Spec,
    options: ScanOptions,
    identities: Sequence[IdentityConfig],
    checks: Sequence[Check],
    progress: Progress | None = None,
) -> ScanResult:
    started = time.monotonic()
    if urlsplit(options.base_url).scheme not in ("http", "https") or not urlsplit(options.base_url).hostname:
        raise ScanError(f"the URL must be http:// or https:// with a host, got {options.base_url!r}")
    result = ScanResult(options.base_url, spec.source.file)
    client = ScanClient(options)
    canary = CanaryListener() if options.canary else None
    try:
        if canary is not None:
            await canary.start()
        try:
            scan = Scan(spec, options, client, [], None, canary)
        except ValueError as exc:  # an --include/--exclude naming no operation
            raise ScanError(str(exc)) from None
        result.verdicts = scan.verdicts
        reach = await scan.raw("GET", "/", scan.anonymous)
        if reach.status == 0:
            raise ScanError(f"cannot reach {options.base_url}: {reach.error}")
        if progress:
            progress("login", 0, max(1, len(identities)), "")
        users: list[Identity] = []
        admin: Identity | None = None
        for i, config in enumerate(identities):
            ident = await login(scan, config)
            if config.role == "admin" and admin is None:
                admin = ident
            elif config.role == "user":
                users.append(ident)
            else:
                raise ScanError(f"identity {config.name}: only one admin identity is supported")
            if progress:
                progress("login", i + 1, max(1, len(identities)), config.name)
        if len(users) == 1 and options.register_users:
            template = next(c for c in identities if c.name == users[0].name)
            second = await register_identity(scan, template)
            if isinstance(second, Identity):
                users.append(second)
                result.notes.append(f"registered the throwaway user {second.name} through "
                                    f"{second.registered_with} and logged it in: it is user B of the cross-user "
                                    "checks (--no-register turns this off)")
            elif second is not None:
                result.notes.append(f"no second user: {second}")
        scan.users, scan.admin = users, admin
        scan.configs.update({c.name: c for c in identities})
        result.identities = [i.name for i in [*users, *([admin] if admin else [])]]
        result.secrets = secrets_of([*users, *([admin] if admin else [])])
        await learn_own_ids(scan, [*users, *([admin] if admin else [])])
        await scan.discover(progress)
        baselines = await scan.baselines()
        snapshots = await scan.profiles()
        await _run_checks(scan, result, checks, baselines, progress)
        if result.stopped is None:
            await _run_chain(scan, result, checks, baselines)
        if any(c.id == VERBOSE.id for c in result.ran):  # passive detection belongs to the verbose-errors check
            active = {f.target for f in result.findings if f.check.id == VERBOSE.id}
            result.findings.extend(scan.traces.findings(active))
        result.notes.extend(await scan.put_back(snapshots))
    finally:
        if "scan" in locals():  # even after a failure: what the scan created is removed, or listed
            result.cleanup = await remove_created(scan)
            result.notes.extend(cleanup_notes(result.cleanup))
        result.exchanges = client.sent
        result.refused = dict(scan.refused) if "scan" in locals() else {}
        for check_id, errors in sorted(client.server_errors.items()):
            if check_id != "engine":
                result.notes.append(f"{check_id}: the target answered {errors} of its {client.per_check[check_id]} "
                                    "request(s) with 5xx")
        for check_id, count in sorted(result.refused.items()):
            result.notes.append(f"{check_id}: the safety gate refused {count} request(s) to held-back operations")
        await client.aclose()
        if canary is not None:
            await canary.stop()
    result.findings = group_root_causes(result.findings)
    result.findings.sort(key=lambda f: (-f.severity, f.check.category, f.check.id, f.target))
    result.duration = time.monotonic() - started
    return result


@dataclass(frozen=True, slots=True)
class RootCause:
    """A finding of ``root`` explains the findings of ``followers``: one flaw, several symptoms."""

    root: str
    followers: tuple[str, ...]
    cause: str
    #: Fold only followers on the root's own target (else any target, into the root on theirs or the first).
    same_target: bool = False


#: Each root check's severity is at least its followers', so folding never hides a worse one from --fail-on.
ROOT_CAUSES: tuple[RootCause, ...] = (
    RootCause("API2-JWT-WRONG-KEY", ("API2-JWT-NONE", "API2-JWT-ALG-SWAP", "API2-JWT-EXPIRED"),
              "the API does not verify token signatures at all"),
    # An administrative operation that answers anonymous requests: one missing check, found by both checks.
    RootCause("API5-BFLA", ("API2-NO-AUTH",), "the administrative operation checks no login at all",
              same_target=True),
)


def group_root_causes(findings: Sequence[ScanFinding]) -> list[ScanFinding]:
    """One finding per root cause: the findings another finding's flaw explains are folded into it as its
    proofs (on the same target when there is a root there, else the first root), so a reader fixes one flaw
    instead of chasing three."""
    out = list(findings)
    for rule in ROOT_CAUSES:
        roots = [f for f in out if f.check.id == rule.root]
        folded: dict[int, list[ScanFinding]] = {id(r): [] for r in roots}
        kept: set[int] = set()  # followers with no root to go to (same_target rules)
        for f in out:
            if f.check.id not in rule.followers:
                continue
            root = next((r for r in roots if r.target == f.target), None if rule.same_target or not roots
                        else roots[0])
            if root is None:
                kept.add(id(f))
            else:
                folded[id(root)].append(f)
        grouped: list[ScanFinding] = []
        for f in out:
            if f.check.id in rule.followers and id(f) not in kept:
                continue
            proofs = folded.get(id(f)) if f.check.id == rule.root else None
            if proofs:
                names = ", ".join(f"{p.check.id} on {p.target}" for p in proofs)
                f = replace(f, message=f"{f.message} Root cause: {rule.cause}; the same flaw also shows as "
                                       f"{names} (proofs below), which this fix closes too.",
                            proofs=(*f.proofs, *proofs))
            grouped.append(f)
        out = grouped
    return out


async def _run_checks(scan: Scan, result: ScanResult, checks: Sequence[Check], baselines: Sequence[Baseline],
                      progress: Progress | None) -> None:
    """Every check in phase order, the health watch after each one that ran (see ``health``)."""
    ordered = sorted(checks, key=lambda c: PHASES.index(c.info.phase))
    client = scan.client
    current: dict[str, int] = {}  # the running check's ID -> its index

    def on_request(check_id: str, label: str) -> None:
        if progress and check_id in current:
            progress(f"{check_id} ({client.sent} requests, {len(result.findings)} findings)",
                     current[check_id], len(ordered), label)

    scan.on_request = on_request
    broken = await scan.health(baselines) if baselines else None
    result.health_checks += 1
    if broken is not None:
        result.health.append(HealthEvent("discovery", broken[0], broken[1] and scan.options.stop_when_broken))
    for index, check in enumerate(ordered):
        current.clear()
        current[check.info.id] = index
        if progress:
            progress(f"{check.info.id} ({client.sent} requests, {len(result.findings)} findings)", index,
                     len(ordered), check.info.phase)
        stopped = result.stopped
        if stopped is not None:
            result.skips.append(Skip(check.info, f"not run: the target broke after {stopped.after} "
                                                 f"({stopped.message})"))
            continue
        reason = skip_reason(check.info, scan)
        if reason is not None:
            result.skips.append(Skip(check.info, reason))
            continue
        result.ran.append(check.info)
        try:
            outcomes = await check.run(scan)
        except Exception as exc:  # a broken check is reported, never silently dropped
            result.skips.append(Skip(check.info, f"the check failed: {type(exc).__name__}: {exc}"))
            outcomes = []
        finally:
            burst = client.bursts.get(check.info.id, 0)
            if burst:
                result.notes.append(f"{check.info.id}: burst of {burst} requests at full speed "
                                    f"(outside --max-rps {scan.options.max_rps:g})")
        seen: set[tuple[str, str, str]] = set()
        for outcome in outcomes:
            if isinstance(outcome, ScanFinding):
                key = (outcome.check.id, outcome.target, outcome.message)
                if key not in seen:
                    seen.add(key)
                    result.findings.append(outcome)
            else:
                result.skips.append(outcome)
        if baselines and not any(e.stopped for e in result.health):
            broken = await scan.health(baselines)
            result.health_checks += 1
            if broken is not None:
                result.health.append(HealthEvent(check.info.id, broken[0],
                                                 broken[1] and scan.options.stop_when_broken))
    if progress:
        progress("done", len(ordered), len(ordered), "")


async def _run_chain(scan: Scan, result: ScanResult, checks: Sequence[Check], baselines: Sequence[Baseline]) -> None:
    """The role-escalation chain (``escalation``) after the checks, then the health watch once more."""
    chain = await rerun_gated(scan, checks)
    result.findings.extend(chain.findings)
    result.notes.extend(chain.notes)
    if chain.escalated and baselines:  # the chain wrote to the target: look at its health again
        broken = await scan.health(baselines)
        result.health_checks += 1
        if broken is not None:
            result.health.append(HealthEvent("role-escalation chain", broken[0],
                                             broken[1] and scan.options.stop_when_broken))


@dataclass
class ScanPlan:
    """What a scan would do, computed without sending anything (``bastion scan --dry-run``)."""

    base_url: str
    spec_file: str
    verdicts: list[Verdict]
    #: (identity, "METHOD /path", media type) of each login flow.
    logins: list[tuple[str, str, str]]
    #: (identity or "each identity", method, path, body excerpt) of each discovery request.
    discovery: list[tuple[str, str, str, str]]
    #: Checks that would run, and checks that would be skipped with the reason.
    checks: list[CheckInfo]
    skips: list[Skip]


def plan_scan(spec: Spec, options: ScanOptions, identities: Sequence[IdentityConfig],
              checks: Sequence[Check]) -> ScanPlan:
    """The plan for ``options`` (raise ScanError on a bad --include/--exclude or login operation)."""
    return asyncio.run(_plan(spec, options, identities, checks))


async def _plan(spec: Spec, options: ScanOptions, identities: Sequence[IdentityConfig],
                checks: Sequence[Check]) -> ScanPlan:
    client = ScanClient(options)
    try:
        try:
            scan = Scan(spec, options, client, [], None)
        except ValueError as exc:
            raise ScanError(str(exc)) from None
        people = [Identity(c.name, role=c.role) for c in identities]
        scan.users = [p for p in people if p.role == "user"]
        scan.admin = next((p for p in people if p.role == "admin"), None)
        logins: list[tuple[str, str, str]] = []
        for config in identities:
            if config.login is None:
                continue
            op = find_operation(spec, config.login.operation)
            if op is None:
                raise ScanError(f"identity {config.name}: login operation {config.login.operation!r} is not in the "
                                "OpenAPI document")
            logins.append((config.name, op.label, login_media_type(scan, op)))
        discovery: list[tuple[str, str, str, str]] = []
        users = [c for c in identities if c.role == "user"]
        if len(users) == 1 and options.register_users and users[0].login is not None:
            signup = signup_operation(scan, find_operation(spec, users[0].login.operation))
            if signup is not None:
                discovery.append(("anonymous", "POST", scan.plan(signup[0], scan.anonymous).path,
                                  "a throwaway user B (--no-register turns this off)"))
        who = "each identity" if people else "nobody (no identities)"
        for op in scan.create_operations():
            plan = scan.plan(op, scan.anonymous)
            body = orjson.dumps(plan.json).decode() if plan.json is not None else (plan.body or b"").decode()
            discovery.append((who, plan.method, plan.path, body[:200]))
        for op in [o for o in scan.operations() if o.method == "get" and not path_params(o.template)]:
            discovery.append((who, "GET", scan.plan(op, scan.anonymous).path, ""))
        ordered = sorted(checks, key=lambda c: PHASES.index(c.info.phase))
        ran: list[CheckInfo] = []
        skips: list[Skip] = []
        for check in ordered:
            reason = skip_reason(check.info, scan)
            if reason is None:
                ran.append(check.info)
            else:
                skips.append(Skip(check.info, reason))
        return ScanPlan(options.base_url, spec.source.file, scan.verdicts, logins, discovery, ran, skips)
    finally:
        await client.aclose()


def run_scan(
    spec_path: Path,
    options: ScanOptions,
    identities_config: Sequence[IdentityConfig] = (),
    checks: Sequence[Check] | None = None,
    progress: Progress | None = None,
) -> ScanResult:
    """Load the document and scan ``options.base_url``; raise ConfigError (document) or ScanError."""
    from bastion.tester.scan.registry import ALL_CHECKS

    spec = load_spec(spec_path)
    return asyncio.run(scan_async(spec, options, identities_config, ALL_CHECKS if checks is None else checks,
                                  progress))
