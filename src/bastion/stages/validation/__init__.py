"""Request validation against the OpenAPI operation (the positive security model)."""

from bastion.pipeline.stage import StageSpec
from bastion.stages.validation.config import ValidationConfig
from bastion.stages.validation.stage import ValidationStage

SPEC = StageSpec(
    name="validation",
    config_model=ValidationConfig,
    build=ValidationStage.from_config,
    default_on=True,
    description=(
        "Checks path, query, header and cookie parameters and the request body against the "
        "route's OpenAPI operation; refuses what does not match with 400 (415 for a media type)."
    ),
)

__all__ = ["SPEC", "ValidationConfig", "ValidationStage"]
