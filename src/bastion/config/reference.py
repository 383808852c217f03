"""Generate the configuration reference (docs/config-reference.md) from the schema itself.

``python -m bastion.config.reference > docs/config-reference.md``. A test checks the
committed file matches, so the reference cannot drift from the code.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bastion.config.model import GatewayConfig
from bastion.pipeline.registry import ORDER


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (list, tuple):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {_type_name(args[0])} to {_type_name(args[1])}" if args else "map"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type):
        return {
            "str": "string",
            "int": "integer",
            "float": "number",
            "bool": "boolean",
            "PosixPath": "path",
            "Path": "path",
            "IPv4Network": "IPv4 CIDR",
            "IPv6Network": "IPv6 CIDR",
            "Any": "any",
        }.get(annotation.__name__, annotation.__name__)
    return str(annotation).replace("typing.", "")


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "**required**"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(see below)"
    if value is None:
        return "—"
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out.extend(_models_in(arg))
    return out


def _section(model: type[BaseModel], path: str, out: list[str], seen: set[str]) -> None:
    if path in seen:
        return
    seen.add(path)
    doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
    out.append(f"### `{path}`\n")
    if doc:
        out.append(doc + "\n")
    out.append("| field | type | default | description |")
    out.append("|---|---|---|---|")
    nested: list[tuple[type[BaseModel], str]] = []
    for name, field in model.model_fields.items():
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        shown = field.alias or name  # `in`, a keyword, is the field `in_` written as `in`
        out.append(f"| `{shown}` | {_type_name(field.annotation)} | {_default(field)} | {desc} |")
        for sub in _models_in(field.annotation):
            suffix = "[]" if typing.get_origin(field.annotation) is list else ""
            nested.append((sub, f"{path}.{shown}{suffix}" if path else f"{shown}{suffix}"))
    out.append("")
    for sub, sub_path in nested:
        _section(sub, sub_path, out, seen)


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from the schema by `python -m bastion.config.reference`; do not edit by hand.",
        "Unknown keys are errors. Strings may use `${ENV_VAR}` or `${ENV_VAR:-default}`; write `$${` for a",
        "literal `${`. A string written `enc:v1:...` (`bastion secrets encrypt`) is decrypted with the master",
        "key (`BASTION_MASTER_KEY` or `BASTION_MASTER_KEY_FILE`); secrets in plain text (fields named like",
        "`password` or `client_secret`, passwords in URLs) are errors. Relative paths resolve against the",
        "folder of the configuration file.",
        "",
        "## bastion.yaml",
        "",
    ]
    _section(GatewayConfig, "", out, set())
    out[11] = "### top level"
    out += [
        "## Stage policies",
        "",
        "Each stage's settings can be written under `policies.<stage>` at the top level, in a service or",
        "in a route of `bastion.yaml`, or as the `x-bastion-<stage>` extension at document, path or",
        "operation level of an OpenAPI document. Layers merge field by field, the nearest winning:",
        "top level < service < OpenAPI document < path < operation (or < route, for routes declared",
        "in `bastion.yaml`). Stages run in this order (response hooks in reverse):",
        "",
    ]
    for spec in ORDER:
        out.append(
            f"1. `{spec.name}` ({'on by default' if spec.default_on else 'off unless configured'}): {spec.description}"
        )
    out.append("")
    for spec in ORDER:
        _section(spec.config_model, f"policies.{spec.name}", out, set())
        deprecated = spec.config_model.deprecated_fields
        if deprecated:
            out.append("Deprecated, still accepted with a warning:\n")
            out.extend(f"- `{name}`: {message}." for name, message in deprecated.items())
            out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
