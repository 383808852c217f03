"""Attack detection (the negative model): injection signatures with anomaly scoring."""

from bastion.pipeline.stage import StageSpec
from bastion.stages.detection.config import DetectionConfig, Exclusion
from bastion.stages.detection.stage import DetectionEngine, DetectionStage, Verdict

SPEC = StageSpec(
    name="detection",
    config_model=DetectionConfig,
    build=DetectionStage.from_config,
    default_on=False,
    description=(
        "Inspects every request input for injection attacks (SQL, XSS, command, path "
        "traversal, SSRF, XXE, template, JNDI and more) and blocks by anomaly score."
    ),
)

__all__ = ["SPEC", "DetectionConfig", "DetectionEngine", "DetectionStage", "Exclusion", "Verdict"]
