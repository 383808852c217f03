"""Settings of the ``validation`` stage."""

from __future__ import annotations

from pydantic import Field

from bastion.pipeline.stage import StageConfig


class ValidationConfig(StageConfig):
    """``policies.validation`` / ``x-bastion-validation``: check requests against the OpenAPI operation."""

    strict: bool = Field(
        False,
        description=(
            "Reject object properties the schema does not declare, even where the schema allows "
            "them (objects with declared properties are treated as additionalProperties: false; "
            "a free-form map, declared with an additionalProperties schema, stays a map)."
        ),
    )
    reject_read_only: bool = Field(
        True,
        description=(
            "Refuse request bodies that send a property the schema marks readOnly (an id, a role, "
            "a balance): the server sets those, and a backend that binds the whole body would "
            "accept them (mass assignment)."
        ),
    )
    validate_path: bool = Field(True, description="Check path parameters against their schemas.")
    validate_query: bool = Field(True, description="Check query parameters against their schemas.")
    validate_headers: bool = Field(True, description="Check header parameters against their schemas.")
    validate_cookies: bool = Field(True, description="Check cookie parameters against their schemas.")
    validate_body: bool = Field(
        True,
        description=(
            "Check the request body: its media type against the declared ones (415 otherwise), "
            "presence when required, and its content against the schema (JSON, form, multipart)."
        ),
    )
    reject_unknown_query_params: bool = Field(
        False, description="Reject query parameters the operation does not declare."
    )
    allow_repeated_params: bool = Field(
        False,
        description=(
            "Accept a query parameter that is not an array given more than once (?id=1&id=2). "
            "Off by default: backends disagree on which value wins (parameter pollution). "
            "Form and multipart body fields that are not arrays may never repeat."
        ),
    )
    reject_duplicate_keys: bool = Field(
        True,
        description=(
            "Refuse a JSON body in which an object repeats a key: parsers disagree on which "
            "value wins, so the backend could read a value Bastion never checked."
        ),
    )
    max_json_depth: int = Field(
        64, ge=1, le=1000, description="Deepest nesting of arrays and objects accepted in a JSON body."
    )
    max_problems: int = Field(
        5, ge=1, le=50, description="Most problems listed in the 400 response's detail (all are logged up to 20)."
    )
    allow_backtracking_patterns: bool = Field(
        False,
        description=(
            "Schema patterns run on a linear-time regex engine, which has no lookaround or "
            "backreferences; a pattern needing them is a load error unless this is true, in which "
            "case it runs on a backtracking engine bounded to 10 000 steps per match."
        ),
    )
