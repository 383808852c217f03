"""What rules look at: an OpenAPI document with ``$ref`` resolution, and a loaded gateway config.

Every node handed to a rule comes with its field path in the file it was written in (after
following ``$ref``), so each finding points at the line to change.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from bastion.config import ConfigError, ConfigIssue, LoadedConfig, ResolvedRoute, load_config
from bastion.config.yamlsrc import FieldPath, Source, load_source

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Parameter:
    """A parameter of an operation (path-level ones merged in), ``$ref`` resolved."""

    name: str
    location: str  # path, query, header, cookie
    node: dict[str, Any]
    path: FieldPath

    @property
    def schema(self) -> dict[str, Any] | None:
        schema = self.node.get("schema")
        return schema if isinstance(schema, dict) else None


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of the document and the security that applies to it."""

    method: str  # lower case, as written
    template: str
    node: dict[str, Any]
    path: FieldPath
    #: The security requirements in force (operation's, else the document's); None if neither has any.
    security: list[Any] | None
    #: Where ``security`` is written (the operation or the document root).
    security_path: FieldPath
    parameters: tuple[Parameter, ...]

    @property
    def public(self) -> bool:
        """Explicitly public: ``security: []`` (on the operation or the whole document)."""
        return self.security == []

    @property
    def secured(self) -> bool:
        """Every alternative requires some scheme (``{}`` would make authentication optional)."""
        return bool(self.security) and all(isinstance(r, dict) and r for r in self.security or [])

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.template}"


@dataclass(frozen=True, slots=True)
class SchemaNode:
    """A (sub)schema met while walking, with the property name that led to it, if any."""

    schema: dict[str, Any]
    path: FieldPath
    name: str | None


class Spec:
    """An OpenAPI 3.x document as rules see it."""

    def __init__(self, source: Source) -> None:
        self.source = source
        data = source.data
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        #: ``$ref`` values that could not be followed (external or dangling), with where they are.
        self.unresolved: dict[FieldPath, str] = {}

    # -- references -------------------------------------------------------------------
    def resolve(self, node: Any, path: FieldPath) -> tuple[Any, FieldPath]:
        """Follow local ``$ref`` chains; return the target and its own path."""
        seen: set[str] = set()
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref: str = node["$ref"]
            if not ref.startswith("#/") or ref in seen:
                self.unresolved[path] = ref
                return node, path
            seen.add(ref)
            target: Any = self.data
            parts: list[str | int] = []
            for raw in ref[2:].split("/"):
                part = raw.replace("~1", "/").replace("~0", "~")
                if isinstance(target, dict) and part in target:
                    target = target[part]
                    parts.append(part)
                elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                    target = target[int(part)]
                    parts.append(int(part))
                else:
                    self.unresolved[path] = ref
                    return node, path
            node, path = target, tuple(parts)
        return node, path

    # -- operations ---------------------------------------------------------------------
    @cached_property
    def operations(self) -> tuple[Operation, ...]:
        paths = self.data.get("paths")
        if not isinstance(paths, dict):
            return ()
        global_security = self.data.get("security")
        out: list[Operation] = []
        for template, raw_item in paths.items():
            item, ipath = self.resolve(raw_item, ("paths", template))
            if not isinstance(item, dict):
                continue
            shared = self._parameters(item.get("parameters"), (*ipath, "parameters"))
            for method in METHODS:
                op = item.get(method)
                if not isinstance(op, dict):
                    continue
                opath: FieldPath = (*ipath, method)
                own = self._parameters(op.get("parameters"), (*opath, "parameters"))
                names = {(p.name, p.location) for p in own}
                params = (*own, *(p for p in shared if (p.name, p.location) not in names))
                if "security" in op:
                    security, spath = op["security"], (*opath, "security")
                else:
                    security, spath = global_security, ("security",)
                out.append(
                    Operation(
                        method=method,
                        template=str(template),
                        node=op,
                        path=opath,
                        security=security if isinstance(security, list) else None,
                        security_path=spath if isinstance(security, list) else opath,
                        parameters=params,
                    )
                )
        return tuple(out)

    def _parameters(self, raw: Any, path: FieldPath) -> tuple[Parameter, ...]:
        if not isinstance(raw, list):
            return ()
        out: list[Parameter] = []
        for i, item in enumerate(raw):
            node, ppath = self.resolve(item, (*path, i))
            if isinstance(node, dict) and isinstance(node.get("name"), str) and isinstance(node.get("in"), str):
                out.append(Parameter(node["name"], node["in"], node, ppath))
        return tuple(out)

    def parameter_schema(self, param: Parameter) -> SchemaNode | None:
        """The parameter's schema (or that of its single ``content`` media type)."""
        if "schema" in param.node:
            schema, spath = self.resolve(param.node["schema"], (*param.path, "schema"))
        else:
            content = param.node.get("content")
            if not isinstance(content, dict) or not content:
                return None
            media, media_node = next(iter(content.items()))
            if not isinstance(media_node, dict) or "schema" not in media_node:
                return None
            schema, spath = self.resolve(media_node["schema"], (*param.path, "content", media, "schema"))
        return SchemaNode(schema, spath, param.name) if isinstance(schema, dict) else None

    # -- bodies and responses -----------------------------------------------------------
    def request_schemas(self, op: Operation) -> Iterator[SchemaNode]:
        """The schema of each media type of the request body."""
        body, bpath = self.resolve(op.node.get("requestBody"), (*op.path, "requestBody"))
        yield from self._content_schemas(body, bpath)

    def responses(self, op: Operation) -> Iterator[tuple[str, dict[str, Any], FieldPath]]:
        """``(status, response object, its path)`` for each declared response."""
        responses = op.node.get("responses")
        if not isinstance(responses, dict):
            return
        for status, raw in responses.items():
            node, rpath = self.resolve(raw, (*op.path, "responses", status))
            if isinstance(node, dict):
                yield str(status), node, rpath

    def response_schemas(self, op: Operation) -> Iterator[tuple[str, SchemaNode]]:
        for status, node, rpath in self.responses(op):
            for schema in self._content_schemas(node, rpath):
                yield status, schema

    def _content_schemas(self, node: Any, path: FieldPath) -> Iterator[SchemaNode]:
        if not isinstance(node, dict) or not isinstance(node.get("content"), dict):
            return
        for media, media_node in node["content"].items():
            if isinstance(media_node, dict) and "schema" in media_node:
                schema, spath = self.resolve(media_node["schema"], (*path, "content", media, "schema"))
                if isinstance(schema, dict):
                    yield SchemaNode(schema, spath, None)

    def input_schemas(self, op: Operation) -> Iterator[SchemaNode]:
        """Schemas of everything the client sends: parameters and request bodies."""
        for param in op.parameters:
            node = self.parameter_schema(param)
            if node is not None:
                yield node
        yield from self.request_schemas(op)

    # -- schema walking -------------------------------------------------------------------
    def walk(self, root: SchemaNode, seen: set[FieldPath] | None = None) -> Iterator[SchemaNode]:
        """``root`` and every subschema under it (properties, items, compositions), once each."""
        seen = set() if seen is None else seen
        stack = [root]
        while stack:
            current = stack.pop()
            if current.path in seen:
                continue
            seen.add(current.path)
            yield current
            schema, path = current.schema, current.path
            children: list[tuple[Any, FieldPath, str | None]] = []
            props = schema.get("properties")
            if isinstance(props, dict):
                children += [(v, (*path, "properties", k), k) for k, v in props.items()]
            for key in ("items", "additionalProperties", "contains", "unevaluatedProperties"):
                if isinstance(schema.get(key), dict):
                    children.append((schema[key], (*path, key), current.name if key == "items" else None))
            for key in ("allOf", "anyOf", "oneOf", "prefixItems"):
                if isinstance(schema.get(key), list):
                    children += [(v, (*path, key, i), current.name) for i, v in enumerate(schema[key])]
            for raw, cpath, name in reversed(children):
                node, rpath = self.resolve(raw, cpath)
                if isinstance(node, dict):
                    stack.append(SchemaNode(node, rpath, name))

    # -- security schemes -----------------------------------------------------------------
    @cached_property
    def security_schemes(self) -> dict[str, tuple[dict[str, Any], FieldPath]]:
        components = self.data.get("components")
        schemes = components.get("securitySchemes") if isinstance(components, dict) else None
        if not isinstance(schemes, dict):
            return {}
        out: dict[str, tuple[dict[str, Any], FieldPath]] = {}
        for name, raw in schemes.items():
            node, path = self.resolve(raw, ("components", "securitySchemes", name))
            if isinstance(node, dict):
                out[str(name)] = (node, path)
        return out


def types_of(schema: dict[str, Any]) -> set[str]:
    """The schema's ``type`` as a set (OpenAPI 3.1 allows a list)."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    return set()


def load_spec(path: Path) -> Spec:
    """Parse an OpenAPI 3.0/3.1 document with line tracking; raise ConfigError if it is not one."""
    src = load_source(path, interpolate=False, display=str(path))
    data = src.data
    if not isinstance(data, dict):
        raise ConfigError([src.issue((), "an OpenAPI document must be a mapping")])
    version = data.get("openapi")
    if not isinstance(version, str) or not version.startswith(("3.0", "3.1")):
        got = "missing" if version is None else repr(version)
        raise ConfigError([src.issue(("openapi",), f"expected OpenAPI version 3.0.x or 3.1.x, got {got}")])
    return Spec(src)


@dataclass
class Gateway:
    """A loaded ``bastion.yaml``: validated config and routes, plus its raw text for lines."""

    loaded: LoadedConfig
    #: The config file as written (``${VAR}`` not expanded), for lines and literal values.
    source: Source
    _hand_routes: dict[str, FieldPath] = field(default_factory=dict)

    def __post_init__(self) -> None:
        services = self.source.data.get("services") if isinstance(self.source.data, dict) else None
        for si, svc in enumerate(services if isinstance(services, list) else []):
            routes = svc.get("routes") if isinstance(svc, dict) else None
            for ri, _ in enumerate(routes if isinstance(routes, list) else []):
                rpath: FieldPath = ("services", si, "routes", ri)
                line = self.source.line_of(rpath)
                self._hand_routes[f"{self.source.file}:{line}" if line else self.source.file] = rpath

    def where(self, route: ResolvedRoute) -> tuple[Source, FieldPath]:
        """The file and field path a route was declared at."""
        if route.operation is not None:
            doc = self.loaded.openapi.get(route.service)
            if doc is not None:
                for op in doc.operations:
                    if op.spec is route.operation:
                        return doc.source, op.location
        return self.source, self._hand_routes.get(route.origin, ())

    def policy_sources(self) -> Iterator[tuple[Source, Any]]:
        """Each file that may carry stage policies, with its data: the config and its OpenAPI documents."""
        yield self.source, self.source.data
        for doc in self.loaded.openapi.values():
            yield doc.source, doc.data


def load_gateway(path: Path) -> Gateway:
    """Load and validate ``path`` (as ``bastion check`` does); raise ConfigError on problems."""
    loaded = load_config(path)
    raw = load_source(path, interpolate=False, display=str(path))
    if not isinstance(raw.data, dict):  # load_config would have refused it already
        raise ConfigError([ConfigIssue(str(path), None, "", "expected a mapping")])
    return Gateway(loaded, raw)
