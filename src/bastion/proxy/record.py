"""The record of an exchange: a draft begun with its head and filled in as it goes, then
completed at its end into a read-only :class:`~bastion.types.ExchangeRecord` and handed to
the worker's sinks, in order (metrics, the access log; see ``docs/concepts.md``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from types import MappingProxyType

from bastion.proxy.http1 import Incoming
from bastion.proxy.metrics import METRICS
from bastion.sensitive.evidence import EvidenceRedactor
from bastion.types import NO_FIELDS, Decision, Exchange, ExchangeRecord, Sink, header_get

log = logging.getLogger("bastion.proxy")

#: A failing sink is logged at most once per this many seconds (it is counted every time).
SINK_ERROR_LOG_INTERVAL = 60.0


class RecordDraft:
    """What the proxy knows of an exchange so far; only the proxy writes it, and only until
    :func:`finish_record` turns it into the exchange's record."""

    __slots__ = (
        "auth",
        "blocked_by",
        "bytes_in",
        "bytes_out",
        "client",
        "decisions",
        "forwarded",
        "host",
        "method",
        "path",
        "reason",
        "request_id",
        "route",
        "service",
        "status",
        "tls",
        "ts",
        "upstream",
        "upstream_error",
        "upstream_seconds",
    )

    def __init__(self, method: str, request_id: str, client: str, host: str = "") -> None:
        self.ts = time.time()
        self.request_id = request_id
        self.client = client
        self.method = method
        self.host = host
        #: The client connection's TLS version, set by the proxy (``None``: plain HTTP).
        self.tls: str | None = None
        #: ``perf_counter()`` when forwarding began, and the wait until the upstream's
        #: response head (``None``: nothing was forwarded).
        self.forwarded = 0.0
        self.upstream_seconds: float | None = None
        self.path: str | None = None
        self.route: str | None = None
        self.service: str | None = None
        #: 0 until the answer's head is written.
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.auth: str | None = None
        self.upstream: str | None = None
        self.upstream_error: str | None = None
        self.blocked_by: str | None = None
        self.reason: str | None = None
        #: A refusal's decision, when a stage (not the core) refused from the request head.
        self.decisions: tuple[Decision, ...] = ()


class RecordSinks:
    """The worker's sinks, in order. Every record goes to each; one that raises is counted
    in ``bastion_sink_errors_total`` and logged (once per ``SINK_ERROR_LOG_INTERVAL``), and
    the request and the other sinks go on as if it had not been there."""

    __slots__ = ("_logged_at", "_sinks", "evidence")

    def __init__(self, sinks: Sequence[Sink], evidence: EvidenceRedactor | None = None) -> None:
        self._sinks = tuple(sinks)
        self._logged_at: dict[str, float] = {}
        #: Cleans the stages' evidence before any sink sees it (credentials, secrets, the
        #: configured fields): the record is built once, redacted, for all of them.
        self.evidence = evidence if evidence is not None else EvidenceRedactor()

    def __call__(self, record: ExchangeRecord) -> None:
        for sink in self._sinks:
            try:
                sink(record)
            except Exception:  # a sink must never fail a request nor stop the sinks after it
                self._failed(sink)

    def _failed(self, sink: Sink) -> None:
        name = sink.name
        METRICS.inc("bastion_sink_errors", (name,))
        now = time.monotonic()
        last = self._logged_at.get(name)
        if last is None or now - last >= SINK_ERROR_LOG_INTERVAL:
            self._logged_at[name] = now
            log.exception("the record sink %r failed (further failures are counted, logged once a minute)", name)


def new_record(req: Incoming, request_id: str, client: str) -> RecordDraft:
    """The record of a request, before anything is known but its head."""
    return RecordDraft(req.method, request_id, client, req.host)


def finish_record(sinks: RecordSinks, ex: Exchange | None, draft: RecordDraft, req: Incoming) -> None:
    """Complete the record with what the stages decided and hand it to the sinks."""
    decisions = draft.decisions
    blocked_by = draft.blocked_by
    facts = NO_FIELDS
    consumer: str | None = None
    credential: str | None = None
    if ex is not None:
        if ex.blocked_by:
            blocked_by = ex.blocked_by
        if ex.decisions:
            decisions = tuple(ex.decisions)
        if ex.facts:
            facts = MappingProxyType(sinks.evidence.facts(ex.facts))
        principal = ex.principal
        if principal is not None:
            consumer = principal.consumer_id
            credential = principal.credential_id or None
    sinks(
        ExchangeRecord(
            draft.ts,
            draft.request_id,
            draft.client,
            draft.method,
            draft.path,
            draft.route,
            draft.service,
            draft.status,
            draft.bytes_in,
            draft.bytes_out,
            time.perf_counter() - req.started,
            draft.auth,
            draft.upstream,
            draft.upstream_error,
            blocked_by,
            draft.reason,
            decisions,
            facts,
            consumer,
            credential,
            draft.host,
            header_get(req.headers, "user-agent"),
            draft.tls,
            draft.upstream_seconds,
        )
    )


__all__ = ["RecordDraft", "RecordSinks", "finish_record", "new_record"]
