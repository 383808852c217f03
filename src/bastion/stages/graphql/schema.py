"""The upstream's GraphQL schema, read from an SDL file once at config load.

A schema lets the stage refuse a document the upstream would refuse anyway (an unknown
field, a wrong argument) before it costs the upstream anything, and answer it without the
field suggestions that map the schema piece by piece.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from graphql import GraphQLError, GraphQLSchema, GraphQLSyntaxError, Source, build_ast_schema, parse, validate_schema
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
