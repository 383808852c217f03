"""Rate limits: exact, on the request head, shared by every worker and instance (GCRA)."""

from bastion.pipeline.stage import StageSpec
from bastion.stages.ratelimit.config import LimitRule, RateLimitConfig
from bastion.stages.ratelimit.gcra import GCRA
from bastion.stages.ratelimit.stage import RateLimitBodyStage, RateLimitStage

SPEC = StageSpec(
    name="ratelimit",
    config_model=RateLimitConfig,
    build=RateLimitStage.from_config,
    extension_name="x-bastion-rate-limit",
    list_field="limits",
    description=(
        "Exact rate limits (GCRA: a burst of up to the limit, then smooth) per consumer, credential, client IP, "
        "route, header, claim or body member value, or globally; several limits at once. Checked on the request "
        "head in one atomic state-backend call (body-keyed limits once the body is read, in one more); a refusal "
        "is 429 (`ratelimit.exceeded`) with `Retry-After`, and answers carry the IETF `RateLimit` and "
        "`RateLimit-Policy` fields."
    ),
)

__all__ = ["GCRA", "SPEC", "LimitRule", "RateLimitBodyStage", "RateLimitConfig", "RateLimitStage"]
