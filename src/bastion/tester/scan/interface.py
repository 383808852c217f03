"""The scanner's types: what a check is, what it can ask of a scan, and what it reports.

A check is a small object with a :class:`CheckInfo` and an async ``run(ctx)`` returning
findings. Everything a check does on the network goes through :class:`ScanContext`, which
applies the scan's rate limit, its scope (only the URL named) and its safety switches, and
records every exchange so a finding can carry evidence and a reproducible curl command.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from bastion.tester.audit.context import Operation, Spec
from bastion.tester.audit.interface import OWASP_API_2023, Severity

__all__ = [
    "OWASP_API_2023",
    "Check",
    "CheckInfo",
    "Exchange",
    "Identity",
    "RequestPlan",
    "ScanContext",
    "ScanFinding",
    "ScanOptions",
    "Severity",
    "Skip",
]

Phase = Literal["discovery", "authentication", "authorization", "properties", "resources", "injection",
                "misconfiguration", "inventory"]


@dataclass(frozen=True, slots=True)
class CheckInfo:
    """A check's identity and advice, the same for every finding it makes."""

    id: str  # e.g. "API1-BOLA-READ"
    title: str
    category: str  # an OWASP API Security Top 10 2023 key, e.g. "API1:2023"
    cwe: int
    severity: Severity
    phase: Phase
    #: What the check sends and what it concludes from, in one or two sentences.
    checks: str
    #: How to fix it, naming the Bastion policy that blocks it where one exists.
    advice: str
    #: Changes or deletes data the scan did not create; runs only with ``--allow-destructive``.
    destructive: bool = False
    #: Needs at least this many non-admin user identities (2 for cross-user checks).
    needs_users: int = 0
    needs_admin: bool = False

    def __post_init__(self) -> None:
        if self.category not in OWASP_API_2023:
            raise ValueError(f"check {self.id}: unknown OWASP API 2023 category {self.category!r}")

    @property
    def cwe_id(self) -> str:
        return f"CWE-{self.cwe}"


@dataclass(slots=True)
class Identity:
    """Who a request is sent as. ``headers``/``cookies``/``query`` carry the credentials
    (filled from static config or by a login flow before checks run)."""

    name: str  # "anonymous", "alice", "bob", "admin"
    role: Literal["anonymous", "user", "admin"] = "user"
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    #: Login credentials when the identity comes from a login flow (used by auth checks).
    username: str | None = None
    password: str | None = None
    #: The bearer token, when the credential is one (JWT checks forge variants of it).
    token: str | None = None
    #: The login operation this identity logged in with, and the body fields holding its credentials.
    login_operation: Operation | None = None
    username_field: str | None = None
    password_field: str | None = None
    #: A token of this identity that has expired (optional, from the identities file), for the expiry check.
    expired_token: str | None = None
    #: The sign-up operation the scan created this identity through (a throwaway user B), if it did.
    registered_with: str | None = None
    #: The identity's own account ID as its profile shows it (``/users/{user_id}/orders`` is filled with it).
    user_id: str | None = None
    #: The user marked this account as made for the scan (``disposable: true``): a wrong password may be sent.
    disposable: bool = False


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request the scan sent and what came back (bodies truncated, secrets redacted on output)."""

    method: str
    url: str
    request_headers: tuple[tuple[str, str], ...]
    request_body: bytes
    status: int  # 0 when no response (connect error, timeout)
    response_headers: tuple[tuple[str, str], ...]
    response_body: bytes
    elapsed: float  # seconds
    identity: str
    error: str | None = None

    def header(self, name: str) -> str | None:
        """The first response header named ``name`` (case-insensitive)."""
        lname = name.lower()
        return next((v for k, v in self.response_headers if k.lower() == lname), None)

    def json(self) -> Any:
        """The response body parsed as JSON, or None when it is not JSON."""
        import orjson

        try:
            return orjson.loads(self.response_body)
        except orjson.JSONDecodeError:
            return None

    @property
    def text(self) -> str:
        return self.response_body.decode("utf-8", "replace")


@dataclass(slots=True)
class RequestPlan:
    """A concrete request for an operation: path parameters filled, a valid example query/body.

    Checks copy and mutate a plan (``plan.with_query(...)``) to inject payloads."""

    operation: Operation | None
    method: str
    path: str  # filled, without the base URL; e.g. "/orders/3"
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None  # a JSON body, or None
    body: bytes | None = None  # a raw body (used when json is None)
    content_type: str | None = None

    def copy(self, **changes: Any) -> RequestPlan:
        data = {
            "operation": self.operation, "method": self.method, "path": self.path,
            "query": list(self.query), "headers": dict(self.headers), "json": self.json,
            "body": self.body, "content_type": self.content_type,
        }
        data.update(changes)
        return RequestPlan(**data)


@dataclass(frozen=True, slots=True)
class ScanFinding:
    """One vulnerability found by one check on one operation, with its evidence."""

    check: CheckInfo
    #: "GET /orders/{id}", or a path for checks that are not about a declared operation.
    target: str
    message: str
    evidence: tuple[Exchange, ...] = ()
    #: Findings of other checks that show this same flaw (one root cause), folded into this one: each is a proof
    #: with its own evidence, not a separate problem to fix.
    proofs: tuple[ScanFinding, ...] = ()
    #: How many of the last evidence exchanges a reader must send to see the flaw: 1, or 2 for a comparison (a
    #: true/false condition pair, a known and an unknown user name), where one request alone proves nothing.
    reproduce: int = 1

    @property
    def severity(self) -> Severity:
        return self.check.severity


@dataclass(frozen=True, slots=True)
class Skip:
    """A check that did not run (or not on some target), and why: nothing is skipped silently."""

    check: CheckInfo
    reason: str


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """What the user allowed."""

    base_url: str
    max_rps: float = 20.0
    allow_destructive: bool = False
    timeout: float = 10.0
    #: Upper bound on requests a single check may send (keeps the scan low-volume).
    max_requests_per_check: int = 400
    #: TLS: a CA bundle to trust instead of the system's, or no verification at all (``--insecure``).
    ca_file: str | None = None
    insecure: bool = False
    #: A 429 is waited out (its Retry-After, at most this many seconds) and retried up to twice;
    #: a longer Retry-After is returned to the check as is.
    max_retry_wait: float = 30.0
    #: Run the local canary listener (SSRF callbacks) on 127.0.0.1.
    canary: bool = True
    #: Operations (operationId or "METHOD /path") the user opted into although the safety classifier
    #: holds them back, and operations never to call (see ``bastion.tester.scan.safety``).
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: Stop the scan when the health watch sees the target break (else warn and carry on).
    stop_when_broken: bool = True
    #: With one user identity, register a throwaway second user through the API's sign-up (for cross-user checks).
    register_users: bool = True


class ScanContext(Protocol):
    """What checks can use. Implemented by the scan engine."""

    spec: Spec
    options: ScanOptions
    #: The unauthenticated identity (always present).
    anonymous: Identity
    #: Non-admin users, in the order configured (two enable cross-user checks).
    users: Sequence[Identity]
    admin: Identity | None
    #: ``scheme://host[:port]`` of the base URL (the scan's scope), and the base URL's path ("/v2" or "").
    origin: str
    base_path: str

    def operations(self) -> Sequence[Operation]:
        """The spec's operations in scope (destructive methods filtered unless allowed)."""

    def all_operations(self) -> Sequence[Operation]:
        """Every operation of the document, destructive ones included: for checks that only inspect them or
        call them in a way that cannot change data (a nonexistent ID, a refused credential)."""

    def plan(self, op: Operation, identity: Identity, *, path_values: Mapping[str, str] | None = None) -> RequestPlan:
        """A valid request for ``op``: path parameters from ``path_values``, then from objects the scan
        has seen or created, then from examples/schemas; required query params and a JSON body
        generated from the schema."""

    async def send(self, plan: RequestPlan, identity: Identity, *, check: CheckInfo | None = None,
                   timeout: float | None = None, retry_429: bool = True,  # noqa: ASYNC109
                   unthrottled: bool = False) -> Exchange:
        """Send a plan as ``identity`` (its credentials added), rate-limited and recorded.

        ``plan.path`` is relative to the base URL (``/orders/3`` -> ``https://host/v2/orders/3``). Redirects
        are never followed. A 429 is waited out and retried (see ``ScanOptions.max_retry_wait``) unless
        ``retry_429=False`` (checks that look for rate limiting want to see it). When the check's request
        cap is spent, nothing is sent and the exchange has status 0 and ``error`` set.

        ``unthrottled=True`` (only with ``check``) sends the request at once instead of waiting for the
        ``--max-rps`` token bucket: for a bounded burst that must outrun the API's rate limit. At most
        ``client.MAX_UNTHROTTLED_PER_CHECK`` (100) requests per check and scan go out that way (the rest wait
        for the bucket); they stay in scope and count against the check's cap, and the report notes
        "burst of N requests at full speed"."""

    async def raw(self, method: str, path: str, identity: Identity, *, headers: Mapping[str, str] | None = None,
                  body: bytes | None = None, query: Sequence[tuple[str, str]] = (),
                  check: CheckInfo | None = None, timeout: float | None = None,  # noqa: ASYNC109
                  retry_429: bool = True) -> Exchange:
        """Send an arbitrary request to a path under the base URL (probing undeclared paths, TRACE...).

        ``path`` is relative to the base URL like a plan's, with dot segments resolved (never above the
        origin); to reach a path outside the base URL's path on the same origin (``/v1/...`` next to a
        ``/v2`` base, ``/debug/vars``), pass ``"/../debug/vars"`` or an absolute URL built from :attr:`origin`
        (``ctx.origin + "/debug/vars"``). URLs on any other origin are refused (status 0)."""

    def canary_url(self, token: str) -> str | None:
        """A URL on the scanner's local canary listener; None when the canary is not running."""

    def canary_hits(self, token: str) -> int:
        """How many requests the canary listener received for ``token``."""

    def created(self, owner: Identity) -> Sequence[tuple[Operation, dict[str, str]]]:
        """Objects ``owner`` created or saw during discovery: the read operation and its path values."""


class Check(ABC):
    """A scanner check. Subclasses set ``info`` and implement :meth:`run`."""

    info: CheckInfo

    @abstractmethod
    async def run(self, ctx: ScanContext) -> list[ScanFinding | Skip]:
        """Probe the target; return findings (and skips with reasons)."""
