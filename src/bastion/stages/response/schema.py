"""An operation's response schemas, turned into :class:`~bastion.stages.response.prune.Keep`
trees once at load.

What is kept:

- an object schema with ``properties`` keeps those; other members are removed unless the
  schema allows them explicitly (``additionalProperties: true``, ``{}`` or a schema, or
  ``patternProperties``): a document that says "anything else too" has declared a free-form
  map, and it is kept (by the ``additionalProperties`` schema, when it is one). An absent
  ``additionalProperties`` is *not* such a declaration: the contract is what is listed;
- ``allOf``, ``anyOf`` and ``oneOf`` are combined: a property any of them declares is kept
  (the stage does not guess which alternative a response is);
- ``$ref`` is followed within the document (recursive schemas included), ``items`` and
  ``prefixItems`` describe array items;
- a property marked ``writeOnly`` (on the property, or on the schema it refers to) is removed
  whatever else the schema says;
- a schema that declares no properties at all (a string, ``type: object`` alone) keeps the
  value as it is.

``$ref`` resolution is the validation stage's (:func:`resolve_pointer`): the same document,
read the same way, for requests and responses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bastion.stages.response.prune import ANYTHING, Keep
from bastion.stages.validation.schema import SchemaError, resolve_object, resolve_pointer

_COMPOSED = ("allOf", "anyOf", "oneOf")
_MAX_DEPTH = 200


def is_json(media: str) -> bool:
    """Whether a media type (lower-case, without parameters) is JSON."""
    return media == "application/json" or media.endswith("+json")


@dataclass
class ResponseSchemas:
    """The statuses an operation declares, each with its JSON response's :class:`Keep`
    (``None``: declared without a JSON schema, nothing to filter)."""

    exact: dict[int, Keep | None] = field(default_factory=dict)
    #: ``2XX``-style ranges, by their first digit.
    ranges: dict[int, Keep | None] = field(default_factory=dict)
    has_default: bool = False
    default: Keep | None = None
    #: The ``never_return`` names (lower case) left out of every tree's members.
    never_return: frozenset[str] = frozenset()

    def declares(self, status: int) -> bool:
        return status in self.exact or status // 100 in self.ranges or self.has_default

    def keep_for(self, status: int) -> Keep | None:
        if status in self.exact:
            return self.exact[status]
        if status // 100 in self.ranges:
            return self.ranges[status // 100]
        return self.default


class _Builder:
    """Builds the :class:`Keep` trees of one document, sharing them between schemas."""

    def __init__(self, doc: dict[str, Any], never_return: frozenset[str]) -> None:
        self.doc = doc
        self.never_return = never_return
        #: Trees by the identities of the schemas they combine (recursive schemas end here).
        self.memo: dict[tuple[int, ...], Keep] = {}

    def resolve(self, schema: Any) -> Any:
        """``schema`` with its ``$ref`` chain followed (a chain back to itself: no constraint)."""
        seen: set[str] = set()
        while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
            ref = schema["$ref"]
            if ref in seen:
                return True
            seen.add(ref)
            schema = resolve_pointer(self.doc, ref)
        return schema

    def flatten(self, schemas: list[Any], out: list[Any] | None = None, depth: int = 0) -> list[Any]:
        """The schemas with ``$ref`` followed and compositions expanded (members included),
        each once."""
        if depth > _MAX_DEPTH:
            raise SchemaError("a response schema is nested more than 200 levels deep")
        found: list[Any] = [] if out is None else out
        for raw in schemas:
            schema = self.resolve(raw)
            if any(schema is s for s in found):
                continue
            found.append(schema)
            if isinstance(schema, dict):
                for key in _COMPOSED:
                    members = schema.get(key)
                    if isinstance(members, list):
                        self.flatten(members, found, depth + 1)
        return found

    def keep(self, schemas: list[Any], depth: int = 0) -> Keep:
        flat = self.flatten(schemas, None, depth)
        dicts = [s for s in flat if isinstance(s, dict)]
        key = tuple(sorted(id(s) for s in dicts))
        found = self.memo.get(key)
        if found is not None:
            return found
        if not any("properties" in s or "items" in s or "prefixItems" in s
                   or isinstance(s.get("additionalProperties"), dict) for s in dicts):
            return ANYTHING
        node = Keep()
        self.memo[key] = node  # before recursing: a recursive schema refers to itself
        props: dict[str, list[Any]] = {}
        extra: list[Any] = []
        allows_extra = False
        items: list[Any] = []
        hidden: set[str] = set()
        for s in dicts:
            declared = s.get("properties")
            if isinstance(declared, dict):
                for name, sub in declared.items():
                    props.setdefault(name, []).append(sub)
                    if self._write_only(sub):
                        hidden.add(name)
            more = s.get("additionalProperties")
            if more is True or more == {}:
                allows_extra = True
            elif isinstance(more, dict):
                allows_extra = True
                extra.append(more)
            if isinstance(s.get("patternProperties"), dict):
                allows_extra = True
            if isinstance(s.get("items"), (dict, bool)):
                items.append(s["items"])
            prefix = s.get("prefixItems")
            if isinstance(prefix, list):
                items.extend(prefix)
        node.closed = bool(props) and not allows_extra
        never = self.never_return
        node.members = {name: self.keep(subs, depth + 1) for name, subs in props.items()
                        if name not in hidden and name.lower() not in never}
        node.hidden = frozenset(hidden)
        node.other = self.keep(extra, depth + 1) if extra else None
        node.items = self.keep(items, depth + 1) if items else None
        return node

    def _write_only(self, schema: Any) -> bool:
        if isinstance(schema, dict) and schema.get("writeOnly") is True:
            return True  # beside a $ref (3.1) or on an inline schema
        target = self.resolve(schema)
        return isinstance(target, dict) and target.get("writeOnly") is True


def response_schemas(operation: dict[str, Any], doc: dict[str, Any],
                     never_return: frozenset[str] = frozenset()) -> ResponseSchemas | None:
    """The operation's declared responses; ``None`` when it declares none. A declared
    property named in ``never_return`` (lower case) is left out of the trees' members: it is
    removed as a name that never leaves, wherever it stands.

    :class:`SchemaError` when a ``$ref`` does not resolve."""
    responses = operation.get("responses")
    if not isinstance(responses, dict) or not responses:
        return None
    builder = _Builder(doc, never_return)
    out = ResponseSchemas(never_return=never_return)
    for code, raw in responses.items():
        text = str(code).strip().upper()
        response = resolve_object(doc, raw, f"response {text}")
        keep = _json_keep(builder, response, text)
        if text == "DEFAULT":
            out.has_default, out.default = True, keep
        elif len(text) == 3 and text[0] in "12345" and text[1:] == "XX":
            out.ranges[int(text[0])] = keep
        elif text.isdigit():
            out.exact[int(text)] = keep
        else:
            raise SchemaError(f"response {code!r} is not a status code, a range like 2XX, or 'default'")
    return out


def _json_keep(builder: _Builder, response: dict[str, Any], code: str) -> Keep | None:
    content = response.get("content")
    if not isinstance(content, dict):
        return None
    for media, obj in content.items():
        if is_json(str(media).split(";", 1)[0].strip().lower()) and isinstance(obj, dict) and "schema" in obj:
            try:
                return builder.keep([obj["schema"]])
            except SchemaError as exc:
                raise SchemaError(f"response {code}: {exc}") from None
    return None
