"""Response security headers: set the safe defaults, strip what reveals the backend."""

from bastion.pipeline.stage import StageSpec
from bastion.stages.headers.config import HeadersConfig
from bastion.stages.headers.stage import HeadersStage

SPEC = StageSpec(
    name="headers",
    config_model=HeadersConfig,
    build=HeadersStage.from_config,
    default_on=True,
    description="Adds security response headers and removes headers that reveal the backend.",
)

__all__ = ["SPEC", "HeadersConfig", "HeadersStage"]
