"""Authentication: who may call a route that is not public.

Today it has no method to verify credentials with, so it enforces deny by default: a route
that requires authentication answers 401 unless its backend authenticates requests itself
(``delegate: upstream``). API keys, JWT, OAuth and mTLS arrive as methods of this stage.
"""

from bastion.pipeline.stage import StageSpec
from bastion.stages.auth.config import AuthConfig, route_check
from bastion.stages.auth.stage import AuthStage, auth_stage

SPEC = StageSpec(
    name="auth",
    config_model=AuthConfig,
    build=AuthStage.from_config,
    default_on=True,
    description=(
        "Runs on every route that is not public: refuses its requests with 401 (and a "
        "WWW-Authenticate challenge per declared scheme) as soon as the request head is read, "
        "unless `delegate: upstream` says the backend authenticates them itself. It cannot be "
        "turned off on such a route."
    ),
    route_check=route_check,
)

__all__ = ["SPEC", "AuthConfig", "AuthStage", "auth_stage"]
