"""The sans-IO core: stages, their ordered registry and the chain that runs them."""

from bastion.pipeline.chain import BodyFilter, Chain, Pending
from bastion.pipeline.stage import (
    HeadStage,
    RequestStage,
    ResponseBodyStage,
    ResponseStage,
    StageConfig,
    StageSpec,
)

__all__ = [
    "BodyFilter",
    "Chain",
    "HeadStage",
    "Pending",
    "RequestStage",
    "ResponseBodyStage",
    "ResponseStage",
    "StageConfig",
    "StageSpec",
]
