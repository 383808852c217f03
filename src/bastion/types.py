"""The objects every part of the data plane shares.

A request arrives, becomes an :class:`Exchange`, passes through the stages of its route's
chain, and (unless a stage answers it) is forwarded upstream; the upstream's :class:`Response`
then passes back through the same stages in reverse. These classes carry no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from types import MappingProxyType
from typing import Any, Final, Protocol

#: Header lists keep wire order and duplicates. Names are lower-case, values latin-1 text.
HeaderList = list[tuple[str, str]]
_NOTHING: frozenset[str] = frozenset()
#: An empty read-only mapping, shared (no claims, no stage facts).
NO_FIELDS: Mapping[str, object] = MappingProxyType({})


def _no_fields() -> Mapping[str, object]:
    # A dataclass refuses a mapping as a default (it could be shared and changed); this one
    # is read-only, so sharing it is safe.
    return NO_FIELDS


def header_get(headers: HeaderList, name: str) -> str | None:
    """First value of ``name`` (lower-case) in ``headers``, or ``None``."""
    for key, value in headers:
        if key == name:
            return value
    return None


class Request:
    """A parsed, normalised client request, as stages see it.

    ``path`` is the normalised path Bastion routed on and forwards upstream; ``raw_target``
    is what the client sent. ``body`` is filled only when the route's chain asked for the
    body (it is then complete and no larger than the route's cap).
    """

    __slots__ = (
        "body",
        "client_ip",
        "forwarded_for",
        "headers",
        "host",
        "http_version",
        "inert_headers",
        "inert_path",
        "method",
        "parsed_json",
        "path",
        "path_params",
        "query",
        "raw_target",
        "scheme",
    )

    def __init__(
        self,
        method: str,
        raw_target: str,
        path: str,
        query: str,
        headers: HeaderList,
        *,
        client_ip: str = "127.0.0.1",
        scheme: str = "http",
        host: str = "",
        http_version: str = "1.1",
    ) -> None:
        self.method = method
        self.raw_target = raw_target
        self.path = path
        self.query = query
        self.headers = headers
        self.client_ip = client_ip
        self.scheme = scheme
        self.host = host
        self.http_version = http_version
        self.path_params: dict[str, str] = {}
        self.body: bytes | None = None
        #: The body's JSON value once a stage has parsed it (validation does), wrapped in a
        #: 1-tuple since the value itself may be null; later stages reuse it. ``None`` before.
        self.parsed_json: tuple[Any] | None = None
        #: Inputs validation has proven inert (a UUID, a date, a number: nothing a backend
        #: could interpret as code), which detection need not inspect: header names, and
        #: whether the whole path is the route's template with such parameters.
        self.inert_headers: frozenset[str] = _NOTHING
        self.inert_path = False
        #: The X-Forwarded-For chain sent upstream (trusted hops, then the peer).
        self.forwarded_for: list[str] = [client_ip]

    def header(self, name: str) -> str | None:
        """First value of the header ``name`` (case-insensitive)."""
        return header_get(self.headers, name.lower())


class Response:
    """A response on its way to the client.

    ``body`` is ``None`` while the body is still streaming from the upstream; it is bytes
    when a stage produced the response or when the chain asked for the response body.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: HeaderList | None = None, body: bytes | None = b"") -> None:
        self.status = status
        self.headers: HeaderList = headers if headers is not None else []
        self.body = body

    def header(self, name: str) -> str | None:
        """First value of the header ``name`` (case-insensitive)."""
        return header_get(self.headers, name.lower())


@dataclass(slots=True, frozen=True)
class Block:
    """A stage's decision to refuse a request (or a response).

    ``reason`` is a stable machine-readable code (``"headers.forbidden"``) written to the
    access log; ``title`` and ``detail`` go to the client in the problem document, so they
    must never contain internals or echo raw input.
    """

    status: int
    title: str
    detail: str
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True, frozen=True)
class Decision:
    """What a stage decided about an exchange, as recorded in the access log."""

    stage: str
    # "block" (enforced), "monitor" (shadow mode), "error" (stage failed), "uninspected" (a
    # response body over the route's limit passed without the stages that need it)
    action: str
    reason: str
    status: int = 0


@dataclass(slots=True, frozen=True)
class Principal:
    """Who sent a request, once a credential proved it: what the auth stage sets on the
    exchange and later stages read (rate limits by consumer, authorization by scope or role).

    ``consumer_id`` and ``credential_id`` are identifiers, never secrets: they are written to
    the access record. ``claims`` are what the credential asserted (a token's claims), for
    stages that decide on them; they are not logged.
    """

    consumer_id: str
    consumer_name: str = ""
    #: Which of the consumer's credentials was used (a key's or a token's id), "" if unknown.
    credential_id: str = ""
    scopes: frozenset[str] = _NOTHING
    roles: frozenset[str] = _NOTHING
    claims: Mapping[str, object] = field(default_factory=_no_fields)
    #: The consumer's own client networks (its ``ip_allow`` / ``ip_deny``), parsed when the
    #: consumer was loaded; empty: no list of its own. The access stage enforces them.
    ip_allow: tuple[IPv4Network | IPv6Network, ...] = ()
    ip_deny: tuple[IPv4Network | IPv6Network, ...] = ()
    #: A certificate-bound token's (RFC 8705 ``cnf: {"x5t#S256": ...}``) certificate: its
    #: SHA-256 in hex, as :attr:`ClientCertificate.fingerprint`; "" for a bearer credential.
    #: The auth stage accepts the principal only on a connection with that certificate.
    bound_certificate: str = ""


@dataclass(slots=True, frozen=True)
class ClientCertificate:
    """The certificate a client presented in its TLS handshake, verified against
    ``listen.tls.client_ca``: read once per connection, shared by its exchanges."""

    #: SHA-256 of the certificate's DER, lower-case hex without colons.
    fingerprint: str
    #: The subject as RFC 4514 writes it (``CN=svc,O=Example``: most specific first).
    subject: str
    #: subjectAltName entries: DNS names and e-mail addresses lower-cased, URIs as written,
    #: IP addresses in their normal form.
    sans: tuple[str, ...] = ()


class Exchange:
    """One request/response pair travelling through the pipeline."""

    __slots__ = (
        "blocked_by",
        "client_cert",
        "decisions",
        "facts",
        "principal",
        "request",
        "request_id",
        "response",
        "route_id",
        "service",
        "started",
    )

    def __init__(
        self, request: Request, request_id: str, service: str = "", route_id: str = "", started: float | None = None
    ) -> None:
        self.request = request
        self.request_id = request_id
        self.service = service
        self.route_id = route_id
        self.response: Response | None = None
        #: Who sent the request, set by the auth stage once a credential is verified; ``None``
        #: while (or when) the request is anonymous.
        self.principal: Principal | None = None
        #: The client's verified TLS certificate (mTLS), ``None`` when it presented none.
        self.client_cert: ClientCertificate | None = None
        #: What a stage found that belongs in the exchange's record, under the stage's own
        #: name (``exchange.facts[self.name] = ...``), a JSON-serialisable value: the access
        #: log writes each as a top-level field. The proxy knows no stage names.
        self.facts: dict[str, object] = {}
        self.decisions: list[Decision] = []
        self.started = time.perf_counter() if started is None else started
        #: The stage that decided the outcome, when one did (for the access log).
        self.blocked_by = ""


class ExchangeRecord:
    """What happened to one exchange, complete and read-only: built once at its end and
    handed to every :class:`Sink` (the access log writes it as one JSON line, metrics count
    it). Absent facts are ``None``; :meth:`as_dict` leaves them out, as the log does.

    Read-only without a frozen dataclass's cost (whose ``__init__`` sets each field through
    ``object.__setattr__``, 2.4 µs a record compiled): the fields are ``Final``, which mypy
    enforces in our code and for which mypyc makes no setter, and ``__setattr__`` refuses
    any change once built (compiled code's own stores in ``__init__`` bypass it).
    """

    __slots__ = (
        "auth",
        "blocked_by",
        "bytes_in",
        "bytes_out",
        "client",
        "consumer",
        "credential",
        "decisions",
        "facts",
        "host",
        "method",
        "path",
        "reason",
        "request_id",
        "route",
        "sealed",
        "seconds",
        "service",
        "status",
        "tls",
        "ts",
        "upstream",
        "upstream_error",
        "upstream_seconds",
        "user_agent",
    )

    def __init__(
        self,
        ts: float,
        request_id: str,
        client: str,
        method: str,
        path: str | None,
        route: str | None,
        service: str | None,
        status: int,
        bytes_in: int,
        bytes_out: int,
        seconds: float,
        auth: str | None = None,
        upstream: str | None = None,
        upstream_error: str | None = None,
        blocked_by: str | None = None,
        reason: str | None = None,
        decisions: tuple[Decision, ...] = (),
        facts: Mapping[str, object] = NO_FIELDS,
        consumer: str | None = None,
        credential: str | None = None,
        host: str = "",
        user_agent: str | None = None,
        tls: str | None = None,
        upstream_seconds: float | None = None,
    ) -> None:
        #: Wall-clock time the request head arrived (epoch seconds).
        self.ts: Final = ts
        self.request_id: Final = request_id
        self.client: Final = client
        self.method: Final = method
        #: The normalised path; ``None`` when the target was refused.
        self.path: Final = path
        self.route: Final = route
        self.service: Final = service
        #: What the client got (499: it left first).
        self.status: Final = status
        self.bytes_in: Final = bytes_in
        self.bytes_out: Final = bytes_out
        #: Seconds from the request head to the end of the response (log: ``latency_ms``).
        self.seconds: Final = seconds
        #: ``"delegated"`` where the upstream authenticates.
        self.auth: Final = auth
        self.upstream: Final = upstream
        self.upstream_error: Final = upstream_error
        self.blocked_by: Final = blocked_by
        self.reason: Final = reason
        self.decisions: Final = decisions
        #: Each stage's own facts (:attr:`Exchange.facts`), in the order the stages left them.
        self.facts: Final = facts
        #: The principal's ids, when a stage signed the request in.
        self.consumer: Final = consumer
        self.credential: Final = credential
        #: The Host the client asked for (the authority of an absolute-form target).
        self.host: Final = host
        self.user_agent: Final = user_agent
        #: The client connection's TLS version (``"TLSv1.3"``); ``None`` over plain HTTP.
        self.tls: Final = tls
        #: Seconds from forwarding the request to the upstream's response head (retries
        #: included); ``None`` when nothing was forwarded.
        self.upstream_seconds: Final = upstream_seconds
        self.sealed = True

    def __setattr__(self, name: str, value: object) -> None:
        # Reached only from interpreted code: in pure Python while __init__ runs (``sealed``
        # not set yet, or False), and otherwise to refuse a change.
        try:
            sealed = self.sealed
        except AttributeError:
            sealed = False
        if sealed:
            raise AttributeError(f"an exchange record is read-only (tried to set {name!r})")
        object.__setattr__(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        """The record as the access log writes it: fields in a fixed order, absent ones left out."""
        out: dict[str, Any] = {
            "ts": self.ts,
            "request_id": self.request_id,
            "client": self.client,
            "method": self.method,
            "path": self.path,
            "route": self.route,
            "service": self.service,
            "status": self.status,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }
        if self.auth is not None:
            out["auth"] = self.auth
        if self.upstream is not None:
            out["upstream"] = self.upstream
        if self.upstream_error is not None:
            out["upstream_error"] = self.upstream_error
        # Milliseconds to the microsecond: round(x, 3) goes through a decimal conversion
        # (about 1,500 instructions); an integer division by 1000 gives the same float.
        out["latency_ms"] = int(self.seconds * 1_000_000 + 0.5) / 1000
        if self.blocked_by is not None:
            out["blocked_by"] = self.blocked_by
        if self.reason is not None:
            out["reason"] = self.reason
        if self.decisions:
            out["decisions"] = [{"stage": d.stage, "action": d.action, "reason": d.reason} for d in self.decisions]
        facts = self.facts
        if facts:  # most exchanges have none: skip iterating the empty mapping
            for name, value in facts.items():
                out[name] = value
        if self.consumer is not None:
            out["consumer"] = self.consumer
        if self.credential is not None:
            out["credential"] = self.credential
        return out


class Sink(Protocol):
    """Where complete exchange records go (the access log, metrics, the audit log; later
    detectors). Called on the request path once per exchange, in the configured order:
    it must return at once (queue, and do any I/O off the request path, on a timer) and keep
    nothing it would change. An exception is caught, counted and logged; it never reaches
    the request or the sinks after it.
    """

    #: Names the sink in ``bastion_sink_errors_total`` and in the log.
    name: str

    def __call__(self, record: ExchangeRecord) -> None: ...
