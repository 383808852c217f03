"""The sans-IO core: stages, their ordered registry and the chain that runs them."""

from bastion.pipeline.chain import Chain, Pending
from bastion.pipeline.stage import HeadStage, RequestStage, ResponseStage, StageConfig, StageSpec

__all__ = ["Chain", "HeadStage", "Pending", "RequestStage", "ResponseStage", "StageConfig", "StageSpec"]
