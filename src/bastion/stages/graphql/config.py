"""Settings of the ``graphql`` stage (``policies.graphql`` / ``x-bastion-graphql``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bastion.pipeline.stage import StageConfig
from bastion.stages.graphql.schema import load_schema, unknown_field

_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")


class GraphQLAccess(BaseModel):
    """Who may select a field, or run an operation of a kind: one of ``roles`` (when given)
    and every one of ``scopes`` (when given), from the request's principal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    roles: list[str] = Field(default_factory=list, description="The consumer needs one of these roles.")
    scopes: list[str] = Field(
        default_factory=list, description="The credential needs every one of these scopes (a token's `scope`)."
    )

    @model_validator(mode="after")
    def _something(self) -> GraphQLAccess:
        if not self.roles and not self.scopes:
            raise ValueError("give roles, scopes or both: an empty rule would let nobody through by accident")
        return self


class GraphQLConfig(StageConfig):
    """``policies.graphql``: the route is a GraphQL endpoint; every document it receives is
    parsed and held to these limits before it goes upstream."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    file_fields: ClassVar[tuple[str, ...]] = ("schema",)
    file_keywords: ClassVar[frozenset[str]] = frozenset({"introspect"})

    schema_file: Literal["introspect"] | Path | None = Field(
        None,
        alias="schema",
        description=(
            "The upstream's schema, an SDL file (relative to the file that names it), or `introspect`: "
            "asked of the upstream once when a worker starts (the route answers 503 until it is known). "
            "Every document is also validated against it, and one the schema refuses is answered 400 "
            "(`graphql.invalid`) without reaching the upstream. Without it, only the limits apply."
        ),
    )
    max_depth: int = Field(
        10,
        ge=1,
        le=1000,
        description="Deepest nesting of fields in an operation, fragments followed (`graphql.depth`).",
    )
    max_aliases: int = Field(
        15,
        ge=0,
        le=100_000,
        description=(
            "Most aliased fields in a document, fragments counted each time they are spread "
            "(`graphql.aliases`): 1,000 aliased `login` calls in one request are 1,000 password guesses."
        ),
    )
    max_batch: int = Field(
        5,
        ge=1,
        le=1000,
        description="Most operations in one batched (JSON array) request (`graphql.batch`).",
    )
    max_duplicate_fields: int = Field(
        3,
        ge=1,
        le=100_000,
        description="Most times one field is selected in one selection set (`graphql.duplicate_fields`).",
    )
    max_directives: int = Field(
        10,
        ge=0,
        le=100_000,
        description="Most directives (`@include`, `@skip`, ...) in a document (`graphql.directives`).",
    )
    max_tokens: int = Field(
        2000,
        ge=10,
        le=1_000_000,
        description="Most lexical tokens in a document; parsing stops past it (`graphql.tokens`).",
    )
    max_cost: int = Field(
        1000,
        ge=1,
        le=10**12,
        description=(
            "Highest cost of an operation (`graphql.cost`): each field costs its `field_costs` entry (or "
            "`default_field_cost`), times the list sizes asked for above it (`list_arguments`)."
        ),
    )
    default_field_cost: int = Field(1, ge=0, le=1_000_000, description="Cost of a field not in `field_costs`.")
    field_costs: dict[str, int] = Field(
        default_factory=dict,
        description="Cost of a field by name (`login: 10`, or `Mutation.login: 10` for a root field of one type).",
    )
    list_arguments: list[str] = Field(
        default_factory=lambda: ["first", "last", "limit"],
        description=(
            "Arguments that ask for a list's size: a field with one costs that many times what it selects. "
            "Given by a variable, the request's variable is used."
        ),
    )
    default_list_size: int = Field(
        1,
        ge=1,
        le=1_000_000,
        description=(
            "List size of a field whose list argument is not an integer (missing variable, null), and, "
            "with a `schema`, of a list field without a list argument."
        ),
    )
    introspection_roles: list[str] = Field(
        default_factory=list,
        description=(
            "Consumer roles that may use introspection (`__schema`, `__type`) and see the upstream's field "
            "suggestions; empty: nobody (`graphql.introspection`, 403)."
        ),
    )
    strip_suggestions: bool = Field(
        True,
        description=(
            'Remove field suggestions ("Did you mean ...?") from the upstream\'s error messages for '
            "consumers without an `introspection_roles` role: they reveal the schema piece by piece."
        ),
    )
    admin_mutations: bool = Field(
        False, description="Every mutation requires one of `admin_roles` (`graphql.forbidden`, 403)."
    )
    admin_fields: list[str] = Field(
        default_factory=list,
        description=(
            "Fields (by name at any level, `deleteUser`, or `Mutation.deleteUser`) that require one of `admin_roles`."
        ),
    )
    admin_roles: list[str] = Field(
        default_factory=lambda: ["admin"], description="Consumer roles that may run admin operations."
    )
    field_access: dict[str, GraphQLAccess] = Field(
        default_factory=dict,
        description=(
            "Per-field authorization: a field (by name at any level, `salary`, or `User.salary`, "
            "`Mutation.deleteUser`) selected anywhere in a document needs the rule's roles and scopes "
            "(`graphql.forbidden`, 403). `{salary: {roles: [hr]}, Mutation.refund: {scopes: [payments:write]}}`."
        ),
    )
    operation_access: dict[Literal["query", "mutation", "subscription"], GraphQLAccess] = Field(
        default_factory=dict,
        description=(
            "Per-operation authorization: every operation of a kind needs the rule's roles and scopes "
            "(`graphql.forbidden`, 403). `{mutation: {scopes: [write]}}`."
        ),
    )
    persisted_queries: list[str] = Field(
        default_factory=list,
        description=(
            "Allow-list mode: the SHA-256 (hex) of every document that may run; any other is refused "
            "(`graphql.not_persisted`, 403). Empty: any document within the limits."
        ),
    )
    cache_size: int = Field(
        512,
        ge=0,
        le=1_000_000,
        description="Parsed and measured documents kept per route, by hash (a repeated query is not parsed again).",
    )

    @field_validator("schema_file")
    @classmethod
    def _schema(cls, value: Path | str | None) -> Path | str | None:
        if isinstance(value, Path):
            load_schema(value)  # a missing or invalid file stops the load, naming file, line and column
        return value

    @model_validator(mode="after")
    def _names_in_schema(self) -> GraphQLConfig:
        """With a schema, every ``Type.field`` the settings name must exist in it."""
        if not isinstance(self.schema_file, Path):
            return self
        schema = load_schema(self.schema_file)
        for name in (*self.admin_fields, *self.field_access, *self.field_costs):
            problem = unknown_field(schema, name)
            if problem is not None:
                raise ValueError(problem)
        return self

    @field_validator("persisted_queries")
    @classmethod
    def _hashes(cls, value: list[str]) -> list[str]:
        out = [v.lower() for v in value]
        for digest in out:
            if not _SHA256.fullmatch(digest):
                raise ValueError(f"{digest!r} is not a SHA-256 in hex (64 hex digits)")
        return out

    @field_validator("field_costs")
    @classmethod
    def _costs(cls, value: dict[str, int]) -> dict[str, int]:
        for name, cost in value.items():
            _check_field_name(name)
            if cost < 0:
                raise ValueError(f"the cost of {name!r} is negative")
        return value

    @field_validator("admin_fields")
    @classmethod
    def _fields(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_field_name(name)
        return value

    @field_validator("field_access")
    @classmethod
    def _access(cls, value: dict[str, GraphQLAccess]) -> dict[str, GraphQLAccess]:
        for name in value:
            _check_field_name(name)
        return value

    @field_validator("list_arguments")
    @classmethod
    def _arguments(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a GraphQL argument name")
        return value


def _check_field_name(name: str) -> None:
    parts = name.split(".")
    if len(parts) > 2 or not all(_NAME.fullmatch(p) for p in parts):
        raise ValueError(f"{name!r} is not a field name (`login`) or a root type's field (`Mutation.login`)")
