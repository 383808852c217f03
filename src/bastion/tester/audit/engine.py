"""Run the rules: every spec rule on the document, every config rule on the gateway config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bastion.tester.audit.context import Gateway, Spec, load_gateway, load_spec
from bastion.tester.audit.interface import Finding, Hit, Location, RuleInfo, Skipped
from bastion.tester.audit.registry import CONFIG_RULES, SPEC_RULES


@dataclass
class AuditResult:
    """What an audit found, which rules ran, and which did not (with the reason)."""

    files: list[str]
    findings: list[Finding] = field(default_factory=list)
    ran: list[RuleInfo] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _findings(info: RuleInfo, hits: list[Hit], seen: set[tuple[str, str, str]]) -> list[Finding]:
    out: list[Finding] = []
    for hit in hits:
        loc = Location.of(hit.source, hit.path)
        key = (info.id, loc.file, loc.pointer)
        if key not in seen:  # a schema reached through several $refs is reported once
            seen.add(key)
            out.append(Finding(info, hit.message, loc))
    return out


def run_audit(spec: Spec, gateway: Gateway | None = None) -> AuditResult:
    """Apply every rule; config rules are skipped (and listed as such) without a gateway config."""
    files = [spec.source.file] + ([gateway.source.file] if gateway else [])
    result = AuditResult(files)
    seen: set[tuple[str, str, str]] = set()
    for spec_rule in SPEC_RULES:
        result.findings += _findings(spec_rule.info, list(spec_rule.check(spec)), seen)
        result.ran.append(spec_rule.info)
    for config_rule in CONFIG_RULES:
        if gateway is None:
            result.skipped.append(Skipped(config_rule.info, "no gateway configuration given (-c bastion.yaml)"))
            continue
        result.findings += _findings(config_rule.info, list(config_rule.check(gateway)), seen)
        result.ran.append(config_rule.info)
    result.findings.sort(key=lambda f: (-f.severity, f.rule.id, f.location.file, f.location.line or 0))
    return result


def audit_files(spec_path: Path, config_path: Path | None = None) -> AuditResult:
    """Load the document (and config) and audit them; raise ConfigError if either cannot be loaded."""
    spec = load_spec(spec_path)
    gateway = load_gateway(config_path) if config_path is not None else None
    return run_audit(spec, gateway)
