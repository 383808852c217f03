"""Settings of the ``redact`` stage (``policies.redact`` / ``x-bastion-redact``)."""

from __future__ import annotations

from typing import Literal, TypeAlias

from pydantic import Field, field_validator, model_validator

from bastion.pipeline.stage import StageConfig
from bastion.sensitive import DEFAULT_TYPES, expand

#: What happens to a sensitive value in a response.
Action: TypeAlias = Literal["mask", "remove", "block", "alert"]


class RedactConfig(StageConfig):
    """``policies.redact``: sensitive data in response bodies and headers, found and handled
    per type before the response reaches the client."""

    types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TYPES),
        min_length=1,
        description=(
            "What to look for: card, ssn, iban, email, phone, jwt, private_key, password_hash, aws_key, "
            "github_token, gitlab_token, slack_token, stripe_key, google_api_key, bastion_key, phantom_token, "
            "or the groups 'secrets' (the cloud, SaaS and Bastion keys and private keys) and 'pii' (card, "
            "ssn, iban). E-mail addresses, phone numbers and JWTs are often legitimate: only when listed."
        ),
    )
    action: Action = Field(
        "mask",
        description=(
            "What happens to a value found: 'mask' keeps its last 4 letters or digits (the rest become '*'), "
            "'remove' replaces it with '[REDACTED <type>]', 'block' answers 502 problem+json instead of the "
            "response, 'alert' passes it unchanged; every value found is counted in the access record "
            "(`redact`)."
        ),
    )
    actions: dict[str, Action] = Field(
        default_factory=dict,
        description="Per-type overrides of `action` (a type or a group of `types`): `{ssn: block}`.",
    )
    headers: bool = Field(True, description="Scan response header values too, not only the body.")

    @field_validator("types")
    @classmethod
    def _known_types(cls, value: list[str]) -> list[str]:
        expand(value)  # a ValueError naming the unknown type
        return value

    @model_validator(mode="after")
    def _overrides_are_scanned(self) -> RedactConfig:
        scanned = set(expand(self.types))
        for name in self.actions:
            missing = [k for k in expand([name]) if k not in scanned]
            if missing:
                raise ValueError(
                    f"actions names {name!r}, but {', '.join(missing)} is not in types: add it to types or "
                    "remove the override"
                )
        return self

    def action_of(self) -> dict[str, Action]:
        """The action of each scanned type, overrides applied (a type beats its group)."""
        out: dict[str, Action] = dict.fromkeys(expand(self.types), self.action)
        for name, action in self.actions.items():
            if name not in out:
                for kind in expand([name]):
                    out[kind] = action
        for name, action in self.actions.items():
            if name in out:
                out[name] = action
        return out
