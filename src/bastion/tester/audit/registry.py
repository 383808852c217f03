"""The one list of audit rules, in report order.

Kept apart from ``interface.py`` because it imports every rule family, and the families
import the interface.
"""

from __future__ import annotations

from bastion.tester.audit import (
    auth,
    gateway,
    identity,
    inventory,
    methods,
    objects,
    ratelimit,
    responses,
    schemas,
    ssrf,
    transport,
)
from bastion.tester.audit.context import Gateway, Spec
from bastion.tester.audit.interface import Rule, RuleInfo

SPEC_RULES: tuple[Rule[Spec], ...] = (
    *auth.RULES,
    *methods.RULES,
    *objects.RULES,
    *schemas.RULES,
    *ratelimit.RULES,
    *responses.RULES,
    *ssrf.RULES,
    *transport.RULES,
    *inventory.RULES,
)
CONFIG_RULES: tuple[Rule[Gateway], ...] = (*gateway.RULES, *identity.RULES)

ALL_RULES: tuple[RuleInfo, ...] = (*(r.info for r in SPEC_RULES), *(r.info for r in CONFIG_RULES))
BY_ID: dict[str, RuleInfo] = {r.id: r for r in ALL_RULES}

if len(BY_ID) != len(ALL_RULES):  # pragma: no cover - a programming error, caught by the tests
    raise RuntimeError("two audit rules share an id")
