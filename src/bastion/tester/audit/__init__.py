"""``bastion audit``: static review of an OpenAPI document and a gateway configuration."""

from bastion.tester.audit.context import Gateway, Spec, load_gateway, load_spec
from bastion.tester.audit.engine import AuditResult, audit_files, run_audit
from bastion.tester.audit.interface import Finding, Location, Rule, RuleInfo, Severity, Skipped
from bastion.tester.audit.registry import ALL_RULES, BY_ID

__all__ = [
    "ALL_RULES",
    "BY_ID",
    "AuditResult",
    "Finding",
    "Gateway",
    "Location",
    "Rule",
    "RuleInfo",
    "Severity",
    "Skipped",
    "Spec",
    "audit_files",
    "load_gateway",
    "load_spec",
    "run_audit",
]
