"""Response protection: what of an upstream's answer may reach the client (issue 16).

Undeclared properties filtered against the operation's response schema (OWASP API3),
``writeOnly`` and ``never_return`` properties removed, upstream 5xx bodies masked, and one
uniform answer for every failure of a login-like operation.
"""

from bastion.pipeline.stage import StageSpec
from bastion.stages.response.config import ResponseConfig, UniformFailures
from bastion.stages.response.stage import ResponseFilterStage

SPEC = StageSpec(
    name="response",
    config_model=ResponseConfig,
    build=ResponseFilterStage.from_config,
    lends=(("redact", "redact"),),  # x-bastion-response: {redact: [card, ssn]}: the redact stage's settings
    description=(
        "Runs on the whole body of upstream responses: masks 5xx bodies as problem+json with the request ID, "
        "removes JSON properties the operation's response schema does not declare (or answers 502, or records "
        "them), removes `writeOnly` and `never_return` properties from every JSON response, and answers every "
        "failure of a `uniform_failures` operation alike."
    ),
)

__all__ = ["SPEC", "ResponseConfig", "ResponseFilterStage", "UniformFailures"]
