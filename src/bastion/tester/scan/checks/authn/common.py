"""What every API2 check module shares: the outcome type and the :class:`CheckInfo` of an API2 check."""

from __future__ import annotations

from typing import Any

from bastion.tester.audit.interface import Severity
from bastion.tester.scan.interface import CheckInfo, ScanFinding, Skip

Outcome = ScanFinding | Skip


def api2_info(id: str, title: str, cwe: int, severity: Severity, checks: str, advice: str,
              **extra: Any) -> CheckInfo:
    return CheckInfo(id=id, title=title, category="API2:2023", cwe=cwe, severity=severity, phase="authentication",
                     checks=checks, advice=advice, **extra)

