"""Settings of the ``discovery`` stage."""

from __future__ import annotations

from pydantic import Field, field_validator

from bastion.pipeline.stage import StageConfig
from bastion.sensitive.detectors import DETECTORS, expand

#: Every sensitive data type: discovery reports, it does not change a byte.
ALL_TYPES: tuple[str, ...] = tuple(DETECTORS)


class DiscoveryConfig(StageConfig):
    """``policies.discovery``: observe a route's traffic for API discovery (``bastion
    discover``). It never blocks and never changes a request or a response; with the audit
    log on, what it saw is kept in each request's audit record."""

    sample: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description=(
            "The share of responses whose body is scanned for sensitive data (0 to 1): a sample "
            "is enough to learn what an endpoint returns, and costs a fraction of scanning all."
        ),
    )
    max_scan_bytes: int = Field(
        65536, ge=1024, le=16 * 1024 * 1024, description="At most this many bytes of a sampled body are scanned."
    )
    types: tuple[str, ...] = Field(
        ALL_TYPES,
        description="The sensitive data types looked for (default: every type, `email`, `phone` and `jwt` too).",
    )

    @field_validator("types")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return expand(value)
