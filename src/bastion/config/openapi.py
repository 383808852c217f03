"""Turn an OpenAPI 3.0/3.1 document into route declarations.

Each operation becomes one route named by its operationId; ``x-bastion-<stage>``
extensions at document, path and operation level carry stage policies (nearest wins);
``security: []`` on an operation makes it public.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from bastion.config.errors import ConfigIssue
from bastion.config.model import check_route_path
from bastion.config.yamlsrc import FieldPath, Source

#: Per extension, its fields that hold another extension's settings: ``x-bastion-response``'s
#: ``redact`` is ``x-bastion-redact`` (``StageSpec.lends``).
Lent = dict[str, tuple[tuple[str, str], ...]]

OPERATION_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass(frozen=True)
class PolicyLayer:
    """One place a stage policy was written: its values and where (for error messages)."""

    values: dict[str, Any]
    source: Source
    path: FieldPath


@dataclass
class Operation:
    """One OpenAPI operation, ready to become a route."""

    method: str
    path: str  # the OpenAPI path template (without base path)
    operation_id: str | None
    public: bool
    policies: dict[str, list[PolicyLayer]] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    location: FieldPath = ()
    #: Path parameters declared ``style: matrix`` (the router matches them in ``;params``).
    matrix_params: frozenset[str] = frozenset()


@dataclass
class OpenAPIDocument:
    source: Source
    version: str
    base_path: str
    operations: list[Operation]

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.source.data
        return data


def _extensions(
    obj: dict[str, Any],
    src: Source,
    path: FieldPath,
    known: set[str],
    issues: list[ConfigIssue],
    list_fields: dict[str, str],
    lent: Lent,
) -> dict[str, PolicyLayer]:
    out: dict[str, PolicyLayer] = {}
    for key, value in obj.items():
        if not key.startswith("x-bastion-"):
            continue
        if key not in known:
            issues.append(
                src.issue((*path, key), f"unknown Bastion extension; expected one of: {', '.join(sorted(known))}")
            )
            continue
        if isinstance(value, list) and key in list_fields:
            value = {list_fields[key]: value}  # the bare-list form (errors still point into the list)
        if not isinstance(value, dict):
            issues.append(src.issue((*path, key), "expected a mapping of stage settings"))
            continue
        for lent_field, target in lent.get(key, ()):
            if lent_field in value:
                lent_value = value[lent_field]
                value = {k: v for k, v in value.items() if k != lent_field}
                _lend(obj, src, (*path, key, lent_field), lent_value, target, list_fields, issues, out)
        out[key] = PolicyLayer(value, src, (*path, key))
    return out


def _lend(
    obj: dict[str, Any],
    src: Source,
    path: FieldPath,
    value: Any,
    target: str,
    list_fields: dict[str, str],
    issues: list[ConfigIssue],
    out: dict[str, PolicyLayer],
) -> None:
    """Another extension's settings written inside this one (``x-bastion-response: {redact:
    [...]}``), as that extension's layer; errors point where they are written."""
    if target in obj:
        issues.append(src.issue(path, f"{target} is also set here: write these settings in one place"))
        return
    if isinstance(value, list) and target in list_fields:
        value = {list_fields[target]: value}
    if not isinstance(value, dict):
        issues.append(src.issue(path, "expected a mapping of stage settings (or a list)"))
        return
    out[target] = PolicyLayer(value, src, path)


def base_path_of(doc: dict[str, Any]) -> str:
    """The path of the first server URL (``https://api.test/v1`` -> ``/v1``), '' when none."""
    servers = doc.get("servers")
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], dict):
        return ""
    url = servers[0].get("url")
    if not isinstance(url, str) or "{" in url:
        return ""
    path = urlsplit(url).path if "://" in url else url
    return path.rstrip("/")


def matrix_params(doc: dict[str, Any], item: dict[str, Any], operation: dict[str, Any]) -> frozenset[str]:
    """The names of the operation's path parameters that are ``style: matrix`` (declared on
    the path item or the operation, the operation's own declaration winning; local
    ``$ref`` followed). What cannot be resolved is left out: validation reports it."""
    styles: dict[str, object] = {}
    for level in (item.get("parameters"), operation.get("parameters")):
        for raw in level if isinstance(level, list) else ():
            param = _resolve_local(doc, raw)
            if isinstance(param, dict) and param.get("in") == "path" and isinstance(param.get("name"), str):
                styles[param["name"]] = param.get("style")
    return frozenset(name for name, style in styles.items() if style == "matrix")


def _resolve_local(doc: dict[str, Any], node: Any) -> Any:
    """``node``, or what its chain of local ``$ref`` (``#/components/...``) points at; ``None``
    when a reference does not resolve or loops."""
    seen: set[str] = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/") or ref in seen:
            return None
        seen.add(ref)
        node = doc
        for part in ref[2:].split("/"):
            key = unquote(part).replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
    return node


def parse_openapi(
    src: Source,
    extension_names: dict[str, str],
    issues: list[ConfigIssue],
    list_fields: dict[str, str] | None = None,
    lent: Lent | None = None,
) -> OpenAPIDocument | None:
    """Read operations from ``src``; problems are appended to ``issues``.

    ``extension_names`` maps ``x-bastion-<stage>`` to the stage name; ``list_fields`` maps
    an extension that may be a bare list to the field the list fills (``limits``); ``lent``
    maps an extension to its fields that hold another extension's settings.
    """
    doc = src.data
    if not isinstance(doc, dict):
        issues.append(src.issue((), "an OpenAPI document must be a mapping"))
        return None
    version = doc.get("openapi")
    if not isinstance(version, str) or not (version.startswith("3.0") or version.startswith("3.1")):
        got = "missing" if version is None else repr(version)
        hint = " (Swagger 2.0 documents must be converted to OpenAPI 3 first)" if "swagger" in doc else ""
        issues.append(src.issue(("openapi",), f"expected OpenAPI version 3.0.x or 3.1.x, got {got}{hint}"))
        return None
    paths = doc.get("paths")
    if paths is None:
        paths = {}
    if not isinstance(paths, dict):
        issues.append(src.issue(("paths",), "expected a mapping of paths"))
        return None
    known = set(extension_names)
    lists = list_fields or {}
    lends = lent or {}

    def layers(ext: dict[str, PolicyLayer]) -> dict[str, PolicyLayer]:
        return {extension_names[k]: v for k, v in ext.items()}

    doc_ext = layers(_extensions(doc, src, (), known, issues, lists, lends))
    global_security = doc.get("security")
    operations: list[Operation] = []
    seen_ids: dict[str, FieldPath] = {}
    for raw_path, item in paths.items():
        ppath: FieldPath = ("paths", raw_path)
        try:
            check_route_path(raw_path)
        except ValueError as exc:
            issues.append(src.issue(ppath, str(exc)))
            continue
        if not isinstance(item, dict):
            issues.append(src.issue(ppath, "expected a path item mapping"))
            continue
        path_ext = layers(_extensions(item, src, ppath, known, issues, lists, lends))
        for method in OPERATION_METHODS:
            op = item.get(method)
            if op is None:
                continue
            opath: FieldPath = (*ppath, method)
            if not isinstance(op, dict):
                issues.append(src.issue(opath, "expected an operation mapping"))
                continue
            op_ext = layers(_extensions(op, src, opath, known, issues, lists, lends))
            op_id = op.get("operationId")
            if op_id is not None and not isinstance(op_id, str):
                issues.append(src.issue((*opath, "operationId"), "expected a string"))
                op_id = None
            if op_id is not None:
                if op_id in seen_ids:
                    issues.append(src.issue((*opath, "operationId"), f"operationId {op_id!r} is used twice"))
                seen_ids[op_id] = opath
            security = op.get("security", global_security)
            policies: dict[str, list[PolicyLayer]] = {}
            for level in (doc_ext, path_ext, op_ext):
                for stage, layer in level.items():
                    policies.setdefault(stage, []).append(layer)
            operations.append(
                Operation(
                    method=method.upper(),
                    path=raw_path,
                    operation_id=op_id,
                    public=security == [],
                    policies=policies,
                    spec=op,
                    location=opath,
                    matrix_params=matrix_params(doc, item, op),
                )
            )
    return OpenAPIDocument(src, version, base_path_of(doc), operations)
