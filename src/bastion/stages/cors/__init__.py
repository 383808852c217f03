"""CORS at the gateway: which other origins' pages may call a route from a browser."""

from bastion.pipeline.stage import StageSpec
from bastion.stages.cors.config import CorsConfig
from bastion.stages.cors.stage import CorsStage

SPEC = StageSpec(
    name="cors",
    config_model=CorsConfig,
    build=CorsStage.from_config,
    description=(
        "Answers CORS preflights itself (204, or 403 for an origin, method or header not allowed) before "
        "authentication and without the upstream, and gives allowed origins' requests their "
        "Access-Control-* headers (none for other origins; the upstream's own are dropped)."
    ),
)

__all__ = ["SPEC", "CorsConfig", "CorsStage"]
