"""The ``tracing`` stage's hook: the request's trace context (W3C Trace Context, level 1).

At the head, a valid ``traceparent`` from the client names the trace this request belongs
to and its caller's span; without one (or with a malformed one, which is ignored, as the
recommendation asks) the trace starts here, its ID the request ID when that is 32 hex
digits (Bastion's own are), so trace and request ID are one search. The gateway's span gets
a random 64-bit ID; the ``traceparent`` sent upstream names it, so the upstream's spans are
children of the gateway's. ``tracestate`` goes upstream unchanged. The IDs are left in the
exchange's facts (``tracing``), where the OpenTelemetry exporter (a record sink) reads them.
"""

from __future__ import annotations

import random

from bastion.pipeline.stage import HeadStage, RouteInfo
from bastion.stages.tracing.config import TracingConfig
from bastion.types import Exchange

_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_TRACEPARENT = "traceparent"


def parse_traceparent(value: str) -> tuple[str, str, str] | None:
    """The trace ID, parent span ID and flags of a ``traceparent`` value, or ``None`` when it
    is not one: ``version-traceid-parentid-flags`` in lower-case hex, IDs not all zeros,
    version ``ff`` invalid; a later version may append fields after a ``-``."""
    if len(value) < 55 or (len(value) > 55 and value[55] != "-"):
        return None
    version, trace_id, parent_id, flags = value[:2], value[3:35], value[36:52], value[53:55]
    if value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    if not _HEX.issuperset(value[:2] + trace_id + parent_id + flags) or version == "ff":
        return None
    if version == "00" and len(value) != 55:
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, flags


class TracingStage(HeadStage):
    """Sets the exchange's trace context; never blocks."""

    def __init__(self, config: TracingConfig) -> None:
        super().__init__("tracing", config)
        # Span IDs need to be unlikely to collide, not secret: a PRNG seeded per process.
        self._random = random.Random()

    @classmethod
    def from_config(cls, config: TracingConfig, route: RouteInfo | None = None) -> TracingStage:
        return cls(config)

    def on_request_head(self, exchange: Exchange) -> None:
        request = exchange.request
        headers = request.headers
        incoming: tuple[str, str, str] | None = None
        others = []
        for item in headers:
            if item[0] == _TRACEPARENT:
                if incoming is None:
                    incoming = parse_traceparent(item[1].strip())
            else:
                others.append(item)
        span_id = f"{self._random.getrandbits(64) | 1:016x}"  # never all zeros
        if incoming is not None:
            trace_id, parent_id, flags = incoming
            exchange.facts["tracing"] = {"trace_id": trace_id, "span_id": span_id, "parent_id": parent_id}
        else:
            trace_id, flags = _new_trace_id(exchange.request_id, self._random), "01"
            exchange.facts["tracing"] = {"trace_id": trace_id, "span_id": span_id}
        others.append((_TRACEPARENT, f"00-{trace_id}-{span_id}-{flags}"))
        request.headers = others


def _new_trace_id(request_id: str, rng: random.Random) -> str:
    """The request ID when it is a valid trace ID (32 lower-case hex digits), else a random one."""
    if len(request_id) == 32 and _HEX.issuperset(request_id) and request_id != _ZERO_TRACE:
        return request_id
    return f"{rng.getrandbits(128) | 1:032x}"
