"""Every scanner check, in one explicit order: the modules below, each exposing ``CHECKS``.

The engine runs checks by phase (discovery, authentication, authorization, properties,
resources, injection, misconfiguration, inventory), keeping this order within a phase.
"""

from __future__ import annotations

import importlib

from bastion.tester.scan.interface import Check

#: Check modules under ``bastion.tester.scan.checks``, in order.
MODULES: tuple[str, ...] = (
    "authn",
    "bola",
    "bfla",
    "references",
    "properties",
    "resources",
    "ssrf",
    "misconfig",
    "injection",
    "inventory",
)


def _load() -> tuple[list[Check], list[str]]:
    checks: list[Check] = []
    missing: list[str] = []
    for name in MODULES:
        qualified = f"bastion.tester.scan.checks.{name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name != qualified:  # a broken import inside the module is a bug: let it surface
                raise
            missing.append(name)
            continue
        checks.extend(module.CHECKS)
    return checks, missing


ALL_CHECKS, MISSING_MODULES = _load()
BY_ID: dict[str, Check] = {c.info.id: c for c in ALL_CHECKS}
if len(BY_ID) != len(ALL_CHECKS):
    raise RuntimeError("two scanner checks share an ID")
