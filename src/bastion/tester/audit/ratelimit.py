"""Rate-limit documentation (API4): 429 responses and the headers that tell clients their budget."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bastion.tester.audit.context import Spec
from bastion.tester.audit.interface import Hit, Rule, RuleInfo, Severity

RATE_HEADERS = frozenset(
    {
        "ratelimit",
        "ratelimit-policy",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    }
)


def _header_names(response: dict[str, Any]) -> set[str]:
    headers = response.get("headers")
    return {str(h).lower() for h in headers} if isinstance(headers, dict) else set()


NO_429 = RuleInfo(
    id="BAST-RL-001",
    title="No 429 response",
    category="API4:2023",
    cwe=770,
    severity=Severity.MEDIUM,
    scope="openapi",
    checks="An operation does not declare a `429 Too Many Requests` response: nothing tells clients (or "
    "reviewers) that it is rate limited.",
    fix="Rate-limit the operation at the gateway and declare `429` with a `Retry-After` header in its responses "
    "(a shared `components.responses.TooManyRequests` keeps it short).",
)


def no_429(spec: Spec) -> Iterator[Hit]:
    for op in spec.operations:
        statuses = {s.upper() for s, _, _ in spec.responses(op)}
        if "429" not in statuses and "4XX" not in statuses:
            yield Hit(f"{op.label} declares no 429 response", spec.source, (*op.path, "responses"))


NO_RETRY_AFTER = RuleInfo(
    id="BAST-RL-002",
    title="429 without Retry-After",
    category="API4:2023",
    cwe=770,
    severity=Severity.LOW,
    scope="openapi",
    checks="A 429 response declares neither `Retry-After` nor RateLimit headers: clients can only retry blindly, "
    "which makes the overload worse.",
    fix="Declare `Retry-After` (seconds) on the 429 response, and optionally `RateLimit`/`RateLimit-Policy`.",
)


def no_retry_after(spec: Spec) -> Iterator[Hit]:
    seen: set[tuple[str | int, ...]] = set()
    for op in spec.operations:
        for status, resp, rpath in spec.responses(op):
            names = _header_names(resp)
            if status == "429" and rpath not in seen and "retry-after" not in names and not names & RATE_HEADERS:
                seen.add(rpath)
                yield Hit(f"the 429 response of {op.label} has no Retry-After header", spec.source, rpath)


NO_RATE_HEADERS = RuleInfo(
    id="BAST-RL-003",
    title="Success responses without rate-limit headers",
    category="API4:2023",
    cwe=770,
    severity=Severity.INFO,
    scope="openapi",
    checks="A rate-limited operation (it declares 429) does not declare RateLimit headers on its success "
    "responses, so clients cannot slow down before they are refused.",
    fix="Declare `RateLimit` and `RateLimit-Policy` (or `X-RateLimit-Limit`/`-Remaining`/`-Reset`) headers on "
    "2xx responses.",
)


def no_rate_headers(spec: Spec) -> Iterator[Hit]:
    for op in spec.operations:
        responses = list(spec.responses(op))
        if not any(s == "429" for s, _, _ in responses):
            continue
        ok = [(s, r, p) for s, r, p in responses if s.startswith("2")]
        if ok and not any(_header_names(r) & RATE_HEADERS for _, r, _ in ok):
            yield Hit(f"success responses of {op.label} declare no rate-limit headers", spec.source, ok[0][2])


RULES: tuple[Rule[Spec], ...] = (
    Rule(NO_429, no_429),
    Rule(NO_RETRY_AFTER, no_retry_after),
    Rule(NO_RATE_HEADERS, no_rate_headers),
)
