"""Settings of the ``tracing`` stage."""

from __future__ import annotations

from bastion.pipeline.stage import StageConfig


class TracingConfig(StageConfig):
    """``policies.tracing``: the W3C trace context of each request (``traceparent``), for
    the spans ``audit.otel`` exports. Put on every route by the loader when ``audit.otel``
    is set; ``enabled: false`` on a route leaves it out there. It never refuses a request:
    a malformed ``traceparent`` starts a new trace, as the W3C recommendation asks."""
