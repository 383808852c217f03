"""Discovery: what a route's traffic looks like (query parameters and their types) and which
sensitive data types its responses carry, observed for ``bastion discover``."""

from bastion.pipeline.stage import StageSpec
from bastion.stages.discovery.config import DiscoveryConfig
from bastion.stages.discovery.stage import DiscoveryStage, value_kind

SPEC = StageSpec(
    name="discovery",
    config_model=DiscoveryConfig,
    build=DiscoveryStage.from_config,
    description=(
        "Observes, never blocks: the names and types of the query parameters of each request, and on a "
        "sample of responses which sensitive data types they carry (the response-protection detectors, "
        "observing only). `bastion discover` reads them from the audit log. For catch-all and monitored "
        "services whose API is not declared yet."
    ),
)

__all__ = ["SPEC", "DiscoveryConfig", "DiscoveryStage", "value_kind"]
