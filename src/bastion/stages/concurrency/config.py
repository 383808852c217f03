"""Settings of the ``concurrency`` stage."""

from __future__ import annotations

from pydantic import Field

from bastion.pipeline.stage import StageConfig


class ConcurrencyConfig(StageConfig):
    """``policies.concurrency``: how many requests one consumer may have in flight at once."""

    max_in_flight: int = Field(
        16,
        ge=1,
        le=100_000,
        description=(
            "Most requests of one consumer in flight at once in a worker process, counted over every route "
            "with this stage, from the request head to the end of its answer; beyond it 429 with Retry-After. "
            "Requests without a consumer (public routes) are not counted."
        ),
    )
