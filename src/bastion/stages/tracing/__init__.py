"""Trace context: the client's W3C ``traceparent`` continued, and passed on upstream."""

from bastion.pipeline.stage import StageSpec
from bastion.stages.tracing.config import TracingConfig
from bastion.stages.tracing.stage import TracingStage, parse_traceparent

SPEC = StageSpec(
    name="tracing",
    config_model=TracingConfig,
    build=TracingStage.from_config,
    description=(
        "Continues the client's W3C `traceparent` (or starts a trace whose ID is the request ID) and sends "
        "the gateway's own span upstream as `traceparent`. On every route once `audit.otel` exports spans."
    ),
)

__all__ = ["SPEC", "TracingConfig", "TracingStage", "parse_traceparent"]
