"""The sans-IO core: stages, their ordered registry and the chain that runs them."""

from bastion.pipeline.chain import Chain, Pending, build_chain
from bastion.pipeline.stage import RequestStage, ResponseStage, StageConfig, StageSpec

__all__ = ["Chain", "Pending", "RequestStage", "ResponseStage", "StageConfig", "StageSpec", "build_chain"]
