"""The upstream's GraphQL schema, read from an SDL file once at config load.

A schema lets the stage refuse a document the upstream would refuse anyway (an unknown
field, a wrong argument) before it costs the upstream anything, and answer it without the
field suggestions that map the schema piece by piece.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from graphql import (
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    Source,
    build_ast_schema,
    build_client_schema,
    get_introspection_query,
    parse,
    validate_schema,
)
from graphql.language import OperationType
from graphql.utilities import IntrospectionQuery

if TYPE_CHECKING:
    import httpx
from graphql.validation.validate import validate_sdl


class SchemaFileError(ValueError):
    """An SDL file that cannot be read or is not a valid schema; the message names the
    file, and the line and column graphql-core points at."""


def load_schema(path: Path) -> GraphQLSchema:
    """The schema in ``path`` (SDL), built once per version of the file: every route of a
    service-wide policy shares it, and a reload after an edit reads the new one."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise SchemaFileError(f"{path}: cannot read the GraphQL schema ({exc.strerror or exc})") from None
    return _load(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _load(path: Path, mtime_ns: int, size: int) -> GraphQLSchema:
    """:func:`load_schema` for one version of the file (the key's ``mtime_ns`` and ``size``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaFileError(f"{path}: cannot read the GraphQL schema ({exc})") from None
    try:
        document = parse(Source(text, str(path)))
    except GraphQLSyntaxError as error:
        raise SchemaFileError(_where(path, error)) from None
    errors = validate_sdl(document)
    if errors:
        raise SchemaFileError(_where(path, errors[0]))
    schema = build_ast_schema(document, assume_valid_sdl=True)
    errors = validate_schema(schema)
    if errors:
        raise SchemaFileError(_where(path, errors[0]))
    return schema


def _where(path: Path, error: GraphQLError) -> str:
    """``file:line:column: message`` for graphql-core's first complaint about the file."""
    if error.locations:
        first = error.locations[0]
        return f"{path}:{first.line}:{first.column}: {error.message}"
    return f"{path}: {error.message}"


#: The root types' names by convention (a schema without a ``schema {...}`` definition).
CONVENTIONAL_ROOTS = {
    OperationType.QUERY: "Query",
    OperationType.MUTATION: "Mutation",
    OperationType.SUBSCRIPTION: "Subscription",
}


def root_aliases(schema: GraphQLSchema | None) -> dict[str, str]:
    """The schema's root types that are not named ``Query``, ``Mutation`` or
    ``Subscription``, each to the conventional name of its kind."""
    out: dict[str, str] = {}
    for operation, conventional in CONVENTIONAL_ROOTS.items():
        root = schema.get_root_type(operation) if schema is not None else None
        if root is not None and root.name != conventional:
            out[root.name] = conventional
    return out


def unknown_field(schema: GraphQLSchema, name: str) -> str | None:
    """Why the setting's field name ``Type.field`` (or a plain ``field``, which any type may
    have) names nothing in ``schema``, or ``None``: a rule for a field that does not exist
    would never apply."""
    if "." not in name:
        return None
    type_name, field_name = name.split(".", 1)
    conventional = {v: k for k, v in root_aliases(schema).items()}
    owner = schema.get_type(conventional.get(type_name, type_name))
    if not isinstance(owner, (GraphQLObjectType, GraphQLInterfaceType)):
        return f"{name!r}: the schema has no object or interface type {type_name!r}"
    if field_name not in owner.fields:
        return f"{name!r}: the schema's type {type_name!r} has no field {field_name!r}"
    return None


async def introspect(client: httpx.AsyncClient, url: str) -> GraphQLSchema:
    """The schema the GraphQL server at ``url`` describes when asked (one POST of the
    introspection query); :class:`SchemaFileError` saying why when it does not."""
    response = await client.post(url, json={"query": get_introspection_query(descriptions=False)})
    if response.status_code != 200:
        raise SchemaFileError(f"{url} answered {response.status_code} to the introspection query")
    try:
        body: Any = response.json()
    except ValueError:
        raise SchemaFileError(f"{url} answered the introspection query with something other than JSON") from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or "__schema" not in data:
        raise SchemaFileError(f"{url} answered the introspection query without a schema (introspection is off?)")
    try:
        schema = build_client_schema(cast(IntrospectionQuery, data))
    except (TypeError, ValueError) as exc:
        raise SchemaFileError(f"{url} described a schema graphql-core cannot build: {exc}") from None
    errors = validate_schema(schema)
    if errors:
        raise SchemaFileError(f"{url} described an invalid schema: {errors[0].message}")
    return schema
