"""Authentication: who may call a route that is not public.

From the route's OpenAPI security requirements, the stage reads each scheme's credential
from the request head (an ``apiKey`` scheme's header, cookie or allowed query parameter, an
``Authorization: Bearer`` token) and has it checked by the verifier of its kind (Bastion's
API keys, JWTs, introspected opaque tokens: ``dispatch.py``); the first alternative that
verifies, with its scopes, sets the exchange's principal. Deny by default: a route whose
schemes nothing configured can verify answers 401 unless its backend authenticates requests
itself (``delegate: upstream``).
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
        "Runs on every route that is not public, on the request head (before any of the body is "
        "read): checks the credentials its OpenAPI security requirements name (API keys, bearer "
        "tokens) and sets the consumer; refuses with 401 (RFC 6750 challenges), 403 for a missing "
        "scope, or 401 from the head alone where nothing configured can verify the route's schemes, "
        "unless `delegate: upstream` says the backend authenticates requests itself. It cannot be "
        "turned off on such a route."
    ),
    route_check=route_check,
)

__all__ = ["SPEC", "AuthConfig", "AuthStage", "auth_stage"]
