"""One operation's request rules, compiled once at load.

Everything a request is checked against is gathered into one JSON Schema per accepted
media type (plus one for requests without a body)::

    {"type": "object", "properties": {
        "path":   {"properties": {<name>: <schema>}, "required": [...]},
        "query":  ..., "header": ..., "cookie": ...,
        "body":   <the media type's schema>},
     "$defs": {<every schema the operation references>}}

so a valid request costs one call into the compiled (Rust) validator, and an error's
instance path (``["query", "limit"]``, ``["body", "items", 0]``) says where it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs

from bastion.errors import PolicyError
from bastion.pipeline.stage import RouteInfo
from bastion.stages.validation.body import BodyKind, kind_of
from bastion.stages.validation.config import ValidationConfig
from bastion.stages.validation.messages import name_ref
from bastion.stages.validation.params import DEFAULT_STYLE, STYLES, Location, Param
from bastion.stages.validation.schema import (
    OPENAPI30_KEYWORDS,
    SchemaCompiler,
    SchemaError,
    resolve_object,
    shape_of,
)

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: Header parameters OpenAPI says are ignored (HTTP itself or security schemes define them).
_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})
_LABELS: dict[str, str] = {"path": "path parameter", "query": "query parameter", "header": "header",
                                "cookie": "cookie"}
_BACKTRACK_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Media:
    """One accepted media type of the request body."""

    media: str
    kind: BodyKind
    #: ``None`` when the media type has no schema, or is not one Bastion parses.
    validator: jsonschema_rs.Validator | None
    shape: Any = None
    #: Form fields whose ``encoding`` says ``explode: false`` (comma-separated arrays).
    explode: dict[str, bool] = field(default_factory=dict)


@dataclass
class CompiledOperation:
    """What the stage checks on each request of one route."""

    params: dict[Location, tuple[Param, ...]]
    #: Display names by location and key (header keys are lower-case), for messages.
    names: dict[str, dict[str, str]]
    params_validator: jsonschema_rs.Validator
    body_required: bool = False
    #: ``None`` when the operation declares no request body (or body validation is off).
    media: dict[str, Media] | None = None
    #: Query names the operation declares, and prefixes of its deepObject parameters.
    known_query: frozenset[str] = frozenset()
    known_query_prefixes: tuple[str, ...] = ()
    #: Header parameters whose every valid value is inert (see :func:`inert`), and whether
    #: the path is: its template's parameters all are (a template without any is).
    inert_headers: frozenset[str] = frozenset()
    inert_path: bool = False

    def label(self, location: str, key: str) -> str:
        name = self.names.get(location, {}).get(key, key)
        return f"{_LABELS.get(location, location)} {name_ref(name)}"

    def match(self, media: str) -> Media | None:
        """The declared media type a request's media type falls under (exact, ``type/*``, ``*/*``)."""
        table = self.media
        if table is None:
            return None
        found = table.get(media)
        if found is None:
            found = table.get(media.split("/", 1)[0] + "/*") or table.get("*/*")
        return found


def _path_item(doc: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    """The path item holding ``operation`` (its ``parameters`` apply to the operation too)."""
    paths = doc.get("paths")
    if isinstance(paths, dict):
        for item in paths.values():
            if isinstance(item, dict) and any(item.get(m) is operation for m in _METHODS):
                return item
    return {}


def compile_operation(config: ValidationConfig, route: RouteInfo) -> CompiledOperation | None:
    """Compile the route's operation; ``None`` when the route has none. :class:`PolicyError`
    if it cannot be compiled (an unresolvable ``$ref``, an unsupported pattern...)."""
    operation = route.operation
    if operation is None:
        return None
    try:
        return _compile(config, route, operation)
    except SchemaError as exc:
        raise PolicyError(str(exc)) from None


def _compile(config: ValidationConfig, route: RouteInfo, operation: dict[str, Any]) -> CompiledOperation:
    doc = route.openapi or {}
    openapi30 = str(doc.get("openapi", "3.1")).startswith("3.0")
    compiler = SchemaCompiler(doc, openapi30, config.strict, config.reject_read_only)
    enabled: dict[Location, bool] = {"path": config.validate_path, "query": config.validate_query,
                                     "header": config.validate_headers, "cookie": config.validate_cookies}

    declared: dict[tuple[str, str], dict[str, Any]] = {}
    item = _path_item(doc, operation)
    for level in (item.get("parameters"), operation.get("parameters")):
        for i, raw in enumerate(level if isinstance(level, list) else []):
            p = resolve_object(doc, raw, f"parameter {i}")
            name, where = p.get("name"), p.get("in")
            if not isinstance(name, str) or where not in STYLES:
                raise SchemaError(f"parameter {i} needs a name and 'in' (path, query, header or cookie)")
            declared[(where, name)] = p  # the operation's own declaration wins

    params: dict[Location, list[Param]] = {"path": [], "query": [], "header": [], "cookie": []}
    groups: dict[str, dict[str, Any]] = {}
    names: dict[str, dict[str, str]] = {}
    known_query: set[str] = set()
    prefixes: list[str] = []
    checked: list[tuple[Param, Any]] = []
    for (where, name), p in declared.items():
        loc: Location = where  # type: ignore[assignment]
        if loc == "query":
            known_query.add(name)
        if not enabled[loc] or (loc == "header" and name.lower() in _IGNORED_HEADERS):
            continue
        param, schema = _param(compiler, loc, name, p)
        checked.append((param, schema))
        if loc == "query":
            if param.style == "deepObject":
                prefixes.append(name + "[")
            elif param.is_object and param.explode:
                known_query.update(k for k, _ in param.shape.properties)
        params[loc].append(param)
        group = groups.setdefault(loc, {"type": "object", "properties": {}, "required": []})
        group["properties"][param.key] = schema
        if param.required:
            group["required"].append(param.key)
        names.setdefault(loc, {})[param.key] = name

    base_props: dict[str, Any] = dict(groups)
    media_table: dict[str, Media] | None = None
    body_required = False
    body = operation.get("requestBody")
    if body is not None and config.validate_body:
        rb = resolve_object(doc, body, "requestBody")
        body_required = rb.get("required") is True
        content = rb.get("content")
        media_table = {}
        for key, media_obj in (content.items() if isinstance(content, dict) else ()):
            media = str(key).split(";", 1)[0].strip().lower()
            media_obj = media_obj if isinstance(media_obj, dict) else {}
            kind = kind_of(media)
            schema = media_obj.get("schema")
            if schema is None or kind == "other":
                media_table[media] = Media(media, kind, None)
                continue
            translated = compiler.translate(schema)
            explode = {}
            for prop, enc in (media_obj.get("encoding") or {}).items():
                if isinstance(enc, dict) and enc.get("explode") is False:
                    explode[prop] = False
            media_table[media] = Media(media, kind, _validator(base_props, compiler, config, translated),
                                       shape_of(translated, compiler), explode)
    inert_params = {(p.location, p.key) for p, schema in checked if not p.json_content and inert(schema, compiler)}
    template = set(_TEMPLATE_PARAM.findall(route.path))
    return CompiledOperation(
        params={k: tuple(v) for k, v in params.items() if v},
        names=names,
        params_validator=_validator(base_props, compiler, config, None),
        body_required=body_required,
        media=media_table,
        known_query=frozenset(known_query),
        known_query_prefixes=tuple(prefixes),
        inert_headers=frozenset(key for loc, key in inert_params if loc == "header"),
        inert_path=all(("path", name) in inert_params for name in template),
    )


#: Formats whose valid values (jsonschema-rs checks them strictly) are digits, letters and
#: ``-:.+``: nothing a backend could parse as code or as a path.
INERT_FORMATS = frozenset({"uuid", "date", "date-time"})
_INERT_TYPES = frozenset({"integer", "number", "boolean", "null"})
_TEMPLATE_PARAM = re.compile(r"\{([^{}]+)\}")


def inert(schema: Any, compiler: SchemaCompiler) -> bool:
    """Whether every value a (translated) parameter schema accepts is inert: a number, a
    boolean, or a string of an :data:`INERT_FORMATS` format. Detection then need not inspect
    the parameter once validation has passed (the positive model vouches for it)."""
    schema = compiler.resolve_schema(schema)
    if not isinstance(schema, dict):
        return False
    declared = schema.get("type")
    types = {declared} if isinstance(declared, str) else set(declared) if isinstance(declared, list) else set()
    if not types:
        return False
    if types <= _INERT_TYPES:
        return True
    return types - {"null"} == {"string"} and schema.get("format") in INERT_FORMATS


def _param(compiler: SchemaCompiler, loc: Location, name: str, p: dict[str, Any]) -> tuple[Param, Any]:
    style = p.get("style", DEFAULT_STYLE[loc])
    if style not in STYLES[loc]:
        raise SchemaError(f"{loc} parameter {name!r}: style {style!r} is not allowed for {loc} parameters")
    explode = p.get("explode", style == "form")
    schema = p.get("schema")
    json_content = False
    if schema is None:
        content = p.get("content")
        if isinstance(content, dict) and content:
            media, media_obj = next(iter(content.items()))
            json_content = kind_of(str(media).lower()) == "json"
            schema = media_obj.get("schema") if isinstance(media_obj, dict) else None
    translated = compiler.translate(schema) if schema is not None else True
    required = loc == "path" or p.get("required") is True
    shape = shape_of(translated, compiler)
    return Param.make(name, loc, required, str(style), bool(explode), shape, json_content), translated


def _validator(base: dict[str, Any], compiler: SchemaCompiler, config: ValidationConfig,
               body: Any) -> jsonschema_rs.Validator:
    props = dict(base)
    if body is not None:
        props["body"] = body
    schema = {"type": "object", "properties": props, "$defs": compiler.defs}
    # 3.0 schemas are translated to 2020-12, but for integers (see schema.WHOLE_INTEGER).
    keywords = OPENAPI30_KEYWORDS if compiler.openapi30 else None
    try:
        return jsonschema_rs.Draft202012Validator(
            schema, validate_formats=True, ignore_unknown_formats=True, pattern_options=jsonschema_rs.RegexOptions(),
            keywords=keywords,
        )
    except jsonschema_rs.ValidationError as exc:
        if not _is_pattern_error(exc):
            raise SchemaError(f"a schema is not valid JSON Schema: {exc.message}") from None
        if not config.allow_backtracking_patterns:
            raise SchemaError(
                f"a pattern needs lookaround or backreferences, which the linear-time regex engine does not "
                f"run ({exc.message}); rewrite it, or set allow_backtracking_patterns: true"
            ) from None
    try:
        return jsonschema_rs.Draft202012Validator(
            schema, validate_formats=True, ignore_unknown_formats=True,
            pattern_options=jsonschema_rs.FancyRegexOptions(backtrack_limit=_BACKTRACK_LIMIT), keywords=keywords,
        )
    except jsonschema_rs.ValidationError as exc:
        raise SchemaError(f"a schema is not valid JSON Schema: {exc.message}") from None


def _is_pattern_error(exc: jsonschema_rs.ValidationError) -> bool:
    return type(exc.kind).__name__ == "Format" and exc.kind.as_dict().get("format") == "regex"
