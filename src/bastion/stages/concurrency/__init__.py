"""Requests in flight per consumer: a consumer holding too many open at once gets 429."""

from bastion.pipeline.stage import StageSpec
from bastion.stages.concurrency.config import ConcurrencyConfig
from bastion.stages.concurrency.stage import ConcurrencyStage, ReleaseInFlight

SPEC = StageSpec(
    name="concurrency",
    config_model=ConcurrencyConfig,
    build=ConcurrencyStage.from_config,
    description=(
        "Bounds the requests one consumer has in flight at once (in Redis for every worker of every instance, "
        "or in the one worker with the memory backend), from its head to the end "
        "of its answer; one more is refused with 429 (`concurrency.exceeded`) and `Retry-After` before any of "
        "its body is read."
    ),
)

__all__ = ["SPEC", "ConcurrencyConfig", "ConcurrencyStage", "ReleaseInFlight"]
