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
            "Most requests of one consumer in flight at once, counted over every route with this stage, from "
            "the request head to the end of its answer; beyond it 429 with Retry-After. With the redis state "
            "backend the count is shared by every worker of every instance; with the memory backend it is "
            "the one worker's (and more than one worker is refused). Requests without a consumer (public "
            "routes) are not counted."
        ),
    )
    lease: float = Field(
        30,
        ge=1,
        le=3600,
        description=(
            "With the redis state backend: seconds a request's place is held without being renewed. A worker "
            "renews its requests' places every third of this while they are in flight, so a long request keeps "
            "its place; the places of a worker that died free themselves within this time."
        ),
    )
