"""Error responses (API2, API8): secured operations document 401/403, inputs document 400/422, 5xx exists."""

from __future__ import annotations

from collections.abc import Iterator

from bastion.tester.audit.context import Operation, Spec
from bastion.tester.audit.interface import Hit, Rule, RuleInfo, Severity


def _statuses(spec: Spec, op: Operation) -> set[str]:
    return {s.upper() for s, _, _ in spec.responses(op)}


NO_401 = RuleInfo(
    id="BAST-RSP-001",
    title="Secured operation without 401",
    category="API2:2023",
    cwe=287,
    severity=Severity.LOW,
    scope="openapi",
    checks="An operation that requires authentication does not declare `401 Unauthorized`: what happens with a "
    "missing or bad credential is undocumented, and tests never check it.",
    fix="Declare `401` (with a `WWW-Authenticate` header) on every secured operation; Bastion's auth stage "
    "answers it as application/problem+json.",
)


def no_401(spec: Spec) -> Iterator[Hit]:
    for op in spec.operations:
        statuses = _statuses(spec, op)
        if op.secured and not statuses & {"401", "4XX"}:
            yield Hit(f"{op.label} requires authentication but declares no 401", spec.source, (*op.path, "responses"))


NO_403 = RuleInfo(
    id="BAST-RSP-002",
    title="Secured operation without 403",
    category="API5:2023",
    cwe=285,
    severity=Severity.INFO,
    scope="openapi",
    checks="A secured operation does not declare `403 Forbidden`: the document does not say that some "
    "authenticated callers may be refused, which usually means authorization was not designed.",
    fix="Declare `403` on operations that check roles, scopes or ownership (or 404 if existence is hidden).",
)


def no_403(spec: Spec) -> Iterator[Hit]:
    for op in spec.operations:
        statuses = _statuses(spec, op)
        if op.secured and not statuses & {"403", "404", "4XX"}:
            yield Hit(
                f"{op.label} requires authentication but declares neither 403 nor 404",
                spec.source,
                (*op.path, "responses"),
            )


NO_400 = RuleInfo(
    id="BAST-RSP-003",
    title="Input without a validation error response",
    category="API8:2023",
    cwe=20,
    severity=Severity.LOW,
    scope="openapi",
    checks="An operation takes parameters or a body but declares neither 400 nor 422: invalid input has no "
    "documented answer.",
    fix="Declare `400` (and `422` if you distinguish semantic errors) with an error schema; Bastion's request "
    "validation answers 400 application/problem+json.",
)


def no_400(spec: Spec) -> Iterator[Hit]:
    for op in spec.operations:
        takes_input = bool(op.parameters) or "requestBody" in op.node
        if takes_input and not _statuses(spec, op) & {"400", "422", "4XX"}:
            yield Hit(f"{op.label} takes input but declares no 400/422", spec.source, (*op.path, "responses"))


NO_5XX = RuleInfo(
    id="BAST-RSP-004",
    title="No server error response",
    category="API8:2023",
    cwe=209,
    severity=Severity.LOW,
    scope="openapi",
    checks="An operation declares no 500, 5XX or `default` response: the error format of failures is undefined, "
    "which is where stack traces and internals leak.",
    fix="Declare `default` (or `500`) with a generic error schema that carries no internals; Bastion answers its "
    "own 502/503/504 as application/problem+json.",
)


def no_5xx(spec: Spec) -> Iterator[Hit]:
    for op in spec.operations:
        statuses = _statuses(spec, op)
        if not statuses & {"500", "5XX", "DEFAULT"}:
            yield Hit(f"{op.label} declares no 500/5XX/default response", spec.source, (*op.path, "responses"))


RULES: tuple[Rule[Spec], ...] = (
    Rule(NO_401, no_401),
    Rule(NO_403, no_403),
    Rule(NO_400, no_400),
    Rule(NO_5XX, no_5xx),
)
