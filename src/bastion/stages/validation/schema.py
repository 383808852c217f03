"""OpenAPI schemas to JSON Schema 2020-12, once per route at load.

OpenAPI 3.1 schemas are JSON Schema 2020-12 already; OpenAPI 3.0 schemas are a dialect
(``nullable``, boolean ``exclusiveMinimum``, ``$ref`` that hides its siblings) and are
rewritten here. Every ``$ref`` into the document becomes an entry of the generated
schema's ``$defs``, so a compiled validator needs nothing but itself at request time.

Strict mode adds ``unevaluatedProperties: false`` to every object schema that declares
properties -- but not to the members of ``allOf``/``anyOf``/``oneOf``, whose properties
the composing schema sees as evaluated: strictness applies to the composition as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from jsonschema_rs import KeywordValidator

#: Keywords whose value is one subschema (the value's own position: strict applies).
_ONE_SCHEMA = ("items", "additionalProperties", "unevaluatedProperties", "unevaluatedItems", "contains",
               "propertyNames", "additionalItems", "contentSchema")
#: Keywords whose value is one subschema that only constrains (no strictness inside).
_ONE_SCHEMA_COMPOSED = ("not", "if", "then", "else")
#: Keywords whose value maps names to subschemas.
_MAP_SCHEMAS = ("properties", "patternProperties", "$defs", "definitions")
_MAP_SCHEMAS_COMPOSED = ("dependentSchemas",)
#: Keywords whose value is a list of subschemas.
_LIST_COMPOSED = ("allOf", "anyOf", "oneOf")
_LIST_SCHEMAS = ("prefixItems",)
#: OpenAPI-only or identity keywords dropped from generated schemas (annotations, or
#: keywords that would change ``$ref`` resolution inside the generated document).
_DROPPED = frozenset(
    {"discriminator", "xml", "externalDocs", "example", "nullable", "$id", "$schema", "$anchor",
     "$dynamicAnchor", "$comment"}
)
#: Keywords beside a 3.1 ``$ref`` that carry no constraint.
_ANNOTATIONS = frozenset({"description", "summary", "title", "deprecated", "readOnly", "writeOnly",
                          "default", "examples", "example", "$comment"})

#: The keyword the 3.0 translation puts beside ``type: integer``. OpenAPI 3.0 uses JSON
#: Schema Wright-00, where an integer has no fraction or exponent part (``1.0`` and ``1e3``
#: are numbers, not integers); 2020-12 calls any number with a zero fraction an integer.
#: The JSON parser keeps the difference (``1.0`` is a float) and :class:`WholeInteger`
#: checks it. Source keywords starting with ``x-`` are dropped, so no document can write it.
WHOLE_INTEGER = "x-bastion-integer"

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
_MAX_DEPTH = 200


class SchemaError(ValueError):
    """A schema in the OpenAPI document cannot be compiled (the message says where and why)."""


def resolve_pointer(doc: dict[str, Any], ref: str) -> Any:
    """The object a local ``$ref`` (``#/components/...``) points at; ``SchemaError`` if none."""
    if not ref.startswith("#"):
        raise SchemaError(f"$ref {ref!r} points outside the document; only local references (#/...) are supported")
    node: Any = doc
    fragment = unquote(ref[1:])
    if fragment in ("", "/"):
        return doc
    for raw in fragment.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise SchemaError(f"$ref {ref!r} does not resolve (no {part!r})")
    return node


def resolve_object(doc: dict[str, Any], node: Any, what: str) -> dict[str, Any]:
    """Follow ``$ref`` chains of a non-schema object (parameter, request body)."""
    seen: set[str] = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or ref in seen:
            raise SchemaError(f"{what}: $ref {ref!r} is circular or not a string")
        seen.add(ref)
        node = resolve_pointer(doc, ref)
    if not isinstance(node, dict):
        raise SchemaError(f"{what}: expected a mapping")
    return node


@dataclass
class SchemaCompiler:
    """Translates the schemas of one route; shares one ``$defs`` between its validators."""

    doc: dict[str, Any]
    openapi30: bool
    strict: bool
    #: Request schemas: a ``readOnly`` property may not be sent at all.
    reject_read_only: bool = False
    defs: dict[str, Any] = field(default_factory=dict)
    _names: dict[tuple[str, bool], str] = field(default_factory=dict)

    def translate(self, node: Any, standalone: bool = True, depth: int = 0) -> Any:
        """The JSON Schema 2020-12 form of the OpenAPI schema ``node``."""
        if depth > _MAX_DEPTH:
            raise SchemaError("a schema is nested more than 200 levels deep")
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            raise SchemaError(f"expected a schema (a mapping), got {type(node).__name__}")
        ref = node.get("$ref")
        if isinstance(ref, str):
            siblings = {k: v for k, v in node.items() if k != "$ref" and k not in _ANNOTATIONS}
            if self.openapi30 or not siblings:
                # 3.0: siblings of $ref are ignored by the specification.
                return {"$ref": self._define(ref, standalone, depth)}
            out = self._translate_keywords(siblings, depth)
            out["$ref"] = self._define(ref, False, depth)
            return self._finish(out, node, standalone)
        out = self._translate_keywords(node, depth)
        return self._finish(out, node, standalone)

    def _define(self, ref: str, standalone: bool, depth: int) -> str:
        key = (ref, standalone and self.strict)
        name = self._names.get(key)
        if name is None:
            name = f"d{len(self._names)}"
            self._names[key] = name  # before recursing: a recursive schema refers to itself
            self.defs[name] = True
            try:
                self.defs[name] = self.translate(resolve_pointer(self.doc, ref), standalone, depth + 1)
            except SchemaError as exc:
                raise SchemaError(f"in {ref}: {exc}") from None
        return f"#/$defs/{name}"

    def _translate_keywords(self, node: dict[str, Any], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        d = depth + 1
        for key, value in node.items():
            if key in _DROPPED or key.startswith("x-"):
                continue
            if key in _ONE_SCHEMA and isinstance(value, (dict, bool)):
                out[key] = self.translate(value, True, d)
            elif key in _ONE_SCHEMA_COMPOSED:
                out[key] = self.translate(value, False, d)
            elif key in _MAP_SCHEMAS and isinstance(value, dict):
                out[key] = {k: self.translate(v, True, d) for k, v in value.items()}
            elif key in _MAP_SCHEMAS_COMPOSED and isinstance(value, dict):
                out[key] = {k: self.translate(v, False, d) for k, v in value.items()}
            elif key in _LIST_COMPOSED and isinstance(value, list):
                out[key] = [self.translate(v, False, d) for v in value]
            elif key in _LIST_SCHEMAS and isinstance(value, list):
                out[key] = [self.translate(v, True, d) for v in value]
            else:
                # Values (enum, const, default, bounds, pattern, format...) are copied as-is.
                out[key] = value
        return out

    def _finish(self, out: dict[str, Any], node: dict[str, Any], standalone: bool) -> dict[str, Any]:
        if self.openapi30:
            _from_openapi30(out, node)
        _integer_formats(out)
        _drop_read_only_required(out, self)
        if self.reject_read_only:
            _forbid_read_only(out, self)
        if self.strict and standalone and _declares_properties(out):
            extra = out.get("additionalProperties")
            if extra is True or extra == {}:
                del out["additionalProperties"]  # strict: "allowed" is not "declared"
                extra = None
            if extra is None and "unevaluatedProperties" not in out:
                out["unevaluatedProperties"] = False
        return out

    def resolve_schema(self, schema: Any) -> Any:
        """Follow a generated ``#/$defs/...`` reference (one level)."""
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and len(schema) == 1:
            schema = self.defs.get(schema["$ref"].rsplit("/", 1)[-1], True)
        return schema


def _declares_properties(schema: dict[str, Any]) -> bool:
    return any(k in schema for k in ("properties", "patternProperties", "allOf", "anyOf", "oneOf", "$ref"))


def _from_openapi30(out: dict[str, Any], node: dict[str, Any]) -> None:
    """Rewrite the 3.0-only forms of ``node`` (already copied into ``out``)."""
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        flag = out.get(exclusive)
        if isinstance(flag, bool):
            del out[exclusive]
            if flag and bound in out:
                out[exclusive] = out.pop(bound)
    if node.get("nullable") is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            out["type"] = [*kind, "null"]
        enum = out.get("enum")
        if isinstance(enum, list) and None not in enum:
            out["enum"] = [*enum, None]
    kind = out.get("type")
    if kind == "integer" or (isinstance(kind, list) and "integer" in kind and "number" not in kind):
        out[WHOLE_INTEGER] = True


class WholeInteger:
    """The :data:`WHOLE_INTEGER` keyword for jsonschema-rs: a number written with a fraction
    or an exponent (parsed as a float, whatever its value) is not a 3.0 integer."""

    def __init__(self, parent_schema: dict[str, Any], value: Any, schema_path: list[str | int]) -> None:
        pass

    def validate(self, instance: Any) -> None:
        if isinstance(instance, float):
            raise ValueError("is not an integer (OpenAPI 3.0: no fraction or exponent)")


#: Custom keywords the validators of 3.0 documents need.
OPENAPI30_KEYWORDS: dict[str, type[KeywordValidator]] = {WHOLE_INTEGER: WholeInteger}


def _integer_formats(out: dict[str, Any]) -> None:
    """int32/int64 are bounds: JSON Schema validators ignore these OpenAPI formats."""
    fmt = out.get("format")
    if fmt not in ("int32", "int64"):
        return
    low, high = INT32 if fmt == "int32" else INT64
    lo = out.get("minimum")
    hi = out.get("maximum")
    out["minimum"] = max(lo, low) if isinstance(lo, (int, float)) and not isinstance(lo, bool) else low
    out["maximum"] = min(hi, high) if isinstance(hi, (int, float)) and not isinstance(hi, bool) else high


def _drop_read_only_required(out: dict[str, Any], compiler: SchemaCompiler) -> None:
    """A required ``readOnly`` property is required in responses only, never in requests."""
    required = out.get("required")
    props = out.get("properties")
    if not isinstance(required, list) or not isinstance(props, dict):
        return
    keep = []
    for name in required:
        prop = compiler.resolve_schema(props.get(name))
        if isinstance(prop, dict) and prop.get("readOnly") is True:
            continue
        keep.append(name)
    if len(keep) != len(required):
        out["required"] = keep


def _forbid_read_only(out: dict[str, Any], compiler: SchemaCompiler) -> None:
    """A ``readOnly`` property is the server's to set (an id, a role, a balance): a request
    that sends one is refused rather than trusting the backend to ignore it (mass assignment)."""
    props = out.get("properties")
    if not isinstance(props, dict):
        return
    for name, prop in list(props.items()):
        target = compiler.resolve_schema(prop)
        if isinstance(target, dict) and target.get("readOnly") is True:
            props[name] = False


# -- shapes: what a string from a URL or a form should be turned into ----------------------


@dataclass(frozen=True)
class Shape:
    """The JSON types a schema accepts, and the shapes of its items and properties."""

    types: frozenset[str] = frozenset()
    items: Shape | None = None
    properties: tuple[tuple[str, Shape], ...] = ()

    def property(self, name: str) -> Shape:
        for key, shape in self.properties:
            if key == name:
                return shape
        return ANY


ANY = Shape()

_PY_TYPES: dict[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string",
                              type(None): "null", list: "array", dict: "object"}


def shape_of(schema: Any, compiler: SchemaCompiler, depth: int = 0) -> Shape:
    """The :class:`Shape` of a generated (2020-12) schema, following ``$defs`` references."""
    types: set[str] = set()
    items: list[Shape] = []
    props: dict[str, Shape] = {}
    _collect(schema, compiler, depth, types, items, props)
    return Shape(frozenset(types), items[0] if items else None, tuple(props.items()))


def _collect(schema: Any, compiler: SchemaCompiler, depth: int, types: set[str], items: list[Shape],
             props: dict[str, Shape]) -> None:
    if depth > 12 or not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        _collect(compiler.defs.get(ref.rsplit("/", 1)[-1]), compiler, depth + 1, types, items, props)
    kind = schema.get("type")
    if isinstance(kind, str):
        types.add(kind)
    elif isinstance(kind, list):
        types.update(k for k in kind if isinstance(k, str))
    for value in schema.get("enum", ()) if isinstance(schema.get("enum"), list) else ():
        types.add(_PY_TYPES.get(type(value), "string"))
    if "const" in schema:
        types.add(_PY_TYPES.get(type(schema["const"]), "string"))
    sub_items = schema.get("items")
    if isinstance(sub_items, dict) and not items:
        items.append(shape_of(sub_items, compiler, depth + 1))
    sub_props = schema.get("properties")
    if isinstance(sub_props, dict):
        for name, sub in sub_props.items():
            props.setdefault(name, shape_of(sub, compiler, depth + 1))
    for key in _LIST_COMPOSED:
        for sub in schema.get(key, ()) if isinstance(schema.get(key), list) else ():
            _collect(sub, compiler, depth + 1, types, items, props)
