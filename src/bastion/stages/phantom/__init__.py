"""Phantom tokens: clients hold an opaque token of Bastion's, never the upstream's own.

On a login operation (``policies.phantom.issue``) the token in the upstream's JSON
response is replaced by a phantom token (``bpt_...``) kept hashed in the state backend
with the upstream's token; on routes that accept them (``policies.auth.phantom_tokens``)
the auth stage swaps it back before forwarding and refuses any other bearer token, so a
token forged with the upstream's signing key never gets through.
"""

from bastion.pipeline.stage import StageSpec
from bastion.stages.phantom.config import PhantomConfig
from bastion.stages.phantom.stage import PhantomStage

SPEC = StageSpec(
    name="phantom",
    config_model=PhantomConfig,
    build=PhantomStage.from_config,
    description=(
        "Runs where `issue` is set (a login operation), on the whole response body: replaces the upstream's "
        "token in its JSON response by a phantom token (`bpt_...`) stored, hashed, in the state backend; 503 "
        "when the backend cannot store it. Routes accept phantom tokens with `policies.auth.phantom_tokens`."
    ),
)

__all__ = ["SPEC", "PhantomConfig", "PhantomStage"]
