"""Property-level authorization: which properties of a request body a consumer may set.

Two kinds of property are privileged. Those named in ``privileged_properties`` (``role``,
``is_admin``...) are refused wherever they appear in the body, at any depth: a backend that
binds a whole body to its model (mass assignment) would take them from any level. Those the
operation's schema marks ``readOnly`` are refused where the schema puts them, so that a
writable ``id`` inside a nested reference stays writable while the object's own ``id`` does
not. Names are compared folded (:func:`fold`): backends often bind ``IsAdmin`` to ``is_admin``.
"""

from __future__ import annotations

from typing import Any

from bastion.errors import PolicyError

#: Deepest body nesting walked; a deeper body is refused (validation's default limit too).
MAX_DEPTH = 64
#: Deepest schema nesting compiled (a recursive schema is cut there; deeper levels of a body
#: then get only the ``privileged_properties`` check).
_MAX_SCHEMA_DEPTH = 32


def fold(name: str) -> str:
    """``isAdmin``, ``is_admin``, ``IS-ADMIN`` -> ``isadmin``."""
    return name.lower().replace("_", "").replace("-", "")


class Shape:
    """Where a body's ``readOnly`` properties are: the folded names at this level, and the
    shapes of the properties, array items and additional properties below."""

    __slots__ = ("extra", "items", "props", "read_only")

    def __init__(self) -> None:
        self.read_only: frozenset[str] = frozenset()
        self.props: dict[str, Shape] = {}
        self.items: Shape | None = None
        self.extra: Shape | None = None

    def child(self, folded: str) -> Shape | None:
        found = self.props.get(folded)
        return found if found is not None else self.extra

    @property
    def empty(self) -> bool:
        return not self.read_only and all(s.empty for s in self.props.values()) and (
            self.items is None or self.items.empty
        ) and (self.extra is None or self.extra.empty)


class TooDeep(Exception):
    """The body nests deeper than :data:`MAX_DEPTH`: it cannot be checked in bounded time."""


def request_schemas(operation: dict[str, Any] | None, doc: dict[str, Any] | None) -> list[Any]:
    """The JSON and form schemas of the operation's request body (``$ref`` followed)."""
    if operation is None:
        return []
    body = _resolve(doc or {}, operation.get("requestBody"), 0)
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, dict):
        return []
    out: list[Any] = []
    for media, entry in content.items():
        m = str(media).lower()
        if (m.endswith("json") or m == "application/x-www-form-urlencoded") and isinstance(entry, dict):
            out.append(entry.get("schema"))
    return out


def compile_shape(schemas: list[Any], doc: dict[str, Any] | None) -> Shape | None:
    """The readOnly shape of ``schemas`` (merged); ``None`` when nothing is readOnly."""
    shape = Shape()
    for schema in schemas:
        _into(shape, schema, doc or {}, 0, {})
    return None if shape.empty else shape


def _resolve(doc: dict[str, Any], node: Any, hops: int) -> Any:
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref: str = node["$ref"]
        if not ref.startswith("#/") or hops > 16:
            raise PolicyError(f"access: cannot follow the schema reference {ref!r} (only local references)")
        hops += 1
        target: Any = doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise PolicyError(f"access: the schema reference {ref!r} does not resolve")
            target = target[part]
        node = target
    return node


def _into(shape: Shape, schema: Any, doc: dict[str, Any], depth: int, seen: dict[int, Shape]) -> None:
    """Merge ``schema``'s readOnly layout into ``shape``; ``seen`` maps a schema already being
    compiled to its shape, so a recursive schema becomes a cycle of shapes, not endless work."""
    if depth > _MAX_SCHEMA_DEPTH:
        return
    schema = _resolve(doc, schema, 0)
    if not isinstance(schema, dict):
        return
    for key in ("allOf", "anyOf", "oneOf"):
        parts = schema.get(key)
        for part in parts if isinstance(parts, list) else ():
            _into(shape, part, doc, depth + 1, seen)
    props = schema.get("properties")
    if isinstance(props, dict):
        read_only = set(shape.read_only)
        for name, sub in props.items():
            sub = _resolve(doc, sub, 0)
            if isinstance(sub, dict) and sub.get("readOnly") is True:
                read_only.add(fold(str(name)))
            shape.props[fold(str(name))] = _sub(shape.props.get(fold(str(name))), sub, doc, depth, seen)
        shape.read_only = frozenset(read_only)
    items = schema.get("items")
    if isinstance(items, dict):
        shape.items = _sub(shape.items, items, doc, depth, seen)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        shape.extra = _sub(shape.extra, extra, doc, depth, seen)


def _sub(existing: Shape | None, schema: Any, doc: dict[str, Any], depth: int, seen: dict[int, Shape]) -> Shape:
    known = seen.get(id(schema))
    if known is not None:
        return known
    shape = existing if existing is not None else Shape()
    seen[id(schema)] = shape
    _into(shape, schema, doc, depth + 1, seen)
    return shape


def privileged_in(value: object, names: frozenset[str], shape: Shape | None, depth: int = 0) -> str | None:
    """The path (``profile.role``, ``items[0].id``) of the first privileged property in the
    parsed body ``value``, or ``None``. :class:`TooDeep` beyond :data:`MAX_DEPTH`."""
    if depth > MAX_DEPTH:
        raise TooDeep
    if isinstance(value, dict):
        for key, sub in value.items():
            name = str(key)
            folded = fold(name)
            if folded in names or (shape is not None and folded in shape.read_only):
                return name
            if isinstance(sub, (dict, list)):
                found = privileged_in(sub, names, shape.child(folded) if shape is not None else None, depth + 1)
                if found is not None:
                    return f"{name}.{found}" if not found.startswith("[") else name + found
    elif isinstance(value, list):
        items = shape.items if shape is not None else None
        for i, sub in enumerate(value):
            if isinstance(sub, (dict, list)):
                found = privileged_in(sub, names, items, depth + 1)
                if found is not None:
                    return f"[{i}].{found}" if not found.startswith("[") else f"[{i}]{found}"
    return None


def form_privileged(fields: list[tuple[str, str]], names: frozenset[str], shape: Shape | None) -> str | None:
    """The first privileged field of a form, or ``None``. A field name is read as the
    frameworks that nest form fields read it: ``user[role]`` and ``user.role`` are ``role``
    inside ``user``."""
    for key, _ in fields:
        level = shape
        for part in key.replace("]", "").replace(".", "[").split("["):
            if not part:
                continue
            folded = fold(part)
            if folded in names or (level is not None and folded in level.read_only):
                return key
            level = level.child(folded) if level is not None else None
    return None
