"""Sensitive data redaction in responses: card numbers, SSNs, IBANs, secrets, private keys,
password hashes (and, when asked, e-mail addresses, phone numbers and JWTs) masked, removed,
blocked or only counted, in response bodies as they stream and in response headers."""

from bastion.pipeline.stage import StageSpec
from bastion.stages.redact.config import RedactConfig
from bastion.stages.redact.stage import RedactStage

SPEC = StageSpec(
    name="redact",
    config_model=RedactConfig,
    build=RedactStage.from_config,
    list_field="types",  # x-bastion-redact: [card, ssn] is {types: [card, ssn]}
    description=(
        "Finds sensitive data (card numbers, SSNs, IBANs, cloud and SaaS secrets, private keys, password "
        "hashes; e-mail, phone and JWTs when listed) in response bodies, as they stream, and headers; masks, "
        "removes, blocks (502) or only counts each type, as configured. See docs/redaction.md."
    ),
)

__all__ = ["SPEC", "RedactConfig", "RedactStage"]
