"""The sans-IO core: stages, their ordered registry and the chain that runs them."""

from bastion.pipeline.chain import Chain, build_chain
from bastion.pipeline.stage import RequestStage, ResponseStage, StageConfig, StageSpec

__all__ = ["Chain", "RequestStage", "ResponseStage", "StageConfig", "StageSpec", "build_chain"]
