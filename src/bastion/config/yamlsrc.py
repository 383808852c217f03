"""Read YAML (or JSON) keeping the line of every value, so errors can point at it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bastion.config import secrets
from bastion.config.errors import ConfigError, ConfigIssue

FieldPath = tuple[str | int, ...]


def format_path(path: FieldPath) -> str:
    """``('services', 0, 'upstream')`` -> ``services[0].upstream``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


@dataclass
class Source:
    """A parsed document with the line where each field path starts."""

    file: str
    data: Any
    lines: dict[FieldPath, int] = field(default_factory=dict)
    #: Field paths whose value came from an environment variable or was decrypted (never
    #: echoed in errors).
    secret_paths: set[FieldPath] = field(default_factory=set)
    #: The master key, once an encrypted value needed it (b"": there is none).
    master_key: bytes | None = None
    #: What was written at paths whose value was expanded or decrypted (for the check that
    #: a secret is not in the file: ``${PW:-hunter2}`` is).
    written: dict[FieldPath, str] = field(default_factory=dict)

    def line_of(self, path: FieldPath) -> int | None:
        """The line of ``path``, or of its nearest parent that has one."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def issue(self, path: FieldPath, message: str) -> ConfigIssue:
        return ConfigIssue(self.file, self.line_of(path), format_path(path), message)


def _walk(loader: yaml.SafeLoader, node: yaml.Node, path: FieldPath, src: Source, issues: list[ConfigIssue]) -> Any:
    src.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(src.issue(path, "mapping keys must be plain scalars"))
                continue
            # Keys like 200 (OpenAPI responses) are ints in YAML; fields are named by text.
            key = str(loader.construct_object(key_node))
            if key == "<<":
                issues.append(src.issue(path, "YAML merge keys ('<<') are not supported"))
                continue
            if key in out:
                issues.append(
                    ConfigIssue(
                        src.file,
                        key_node.start_mark.line + 1,
                        format_path((*path, key)),
                        "duplicate key (each key may appear once)",
                    )
                )
            out[key] = _walk(loader, value_node, (*path, key), src, issues)
            src.lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(loader, item, (*path, i), src, issues) for i, item in enumerate(node.value)]
    # A scalar: the safe constructor gives it its type (int, bool, null, str...).
    return loader.construct_object(node, deep=True)


def load_source(path: Path, *, interpolate: bool = True, display: str | None = None) -> Source:
    """Parse ``path`` with line tracking; ``${VAR}`` and ``${VAR:-default}`` are expanded,
    ``enc:v1:`` values decrypted with the master key (:mod:`bastion.config.secrets`)."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(name, None, "", "file not found")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [ConfigIssue(name, None, "", f"not valid UTF-8 ({exc.reason} at byte {exc.start})")]
        ) from None
    except OSError as exc:
        raise ConfigError([ConfigIssue(name, None, "", f"cannot be read: {exc.strerror}")]) from None
    return parse_source(text, name, interpolate=interpolate)


def parse_source(text: str, name: str, *, interpolate: bool = True) -> Source:
    """Parse YAML/JSON text (see :func:`load_source`)."""
    src = Source(name, None)
    issues: list[ConfigIssue] = []
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError([ConfigIssue(name, None, "", "the file is empty")])
        src.data = _walk(loader, root, (), src, issues)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or "invalid YAML"
        raise ConfigError([ConfigIssue(name, line, "", f"YAML syntax error: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(name, None, "", f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    if interpolate:
        src.data = _interpolate(src.data, (), src, issues)
    if issues:
        raise ConfigError(issues)
    return src


def _interpolate(value: Any, path: FieldPath, src: Source, issues: list[ConfigIssue]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, (*path, k), src, issues) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*path, i), src, issues) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        return _expand(value, path, src, issues)
    if isinstance(value, str) and value.startswith(secrets.PREFIX):
        return _decrypt(value, path, src, issues)
    return value


def _decrypt(value: str, path: FieldPath, src: Source, issues: list[ConfigIssue]) -> str:
    """An ``enc:v1:`` value decrypted with the master key (read once per file)."""
    try:
        if src.master_key is None:
            src.master_key = secrets.load_master_key() or b""
        if not src.master_key:
            where = f"{secrets.MASTER_KEY_ENV} or {secrets.MASTER_KEY_FILE_ENV}"
            raise secrets.MasterKeyError(f"an encrypted value needs the master key: set {where}")
        plain = secrets.decrypt(src.master_key, value)
    except secrets.MasterKeyError as exc:
        issues.append(src.issue(path, str(exc)))
        return value
    src.secret_paths.add(path)
    src.written[path] = value
    return plain


def _expand(text: str, path: FieldPath, src: Source, issues: list[ConfigIssue]) -> str:
    src.written[path] = text
    out: list[str] = []
    i = 0
    while i < len(text):
        start = text.find("${", i)
        if start < 0:
            out.append(text[i:])
            break
        if start > 0 and text[start - 1] == "$":  # "$${" is a literal "${"
            out.append(text[i : start - 1] + "${")
            i = start + 2
            continue
        out.append(text[i:start])
        end = text.find("}", start)
        if end < 0:
            issues.append(src.issue(path, "unterminated '${' (write '$${' for a literal '${')"))
            return text
        expr = text[start + 2 : end]
        name, sep, default = expr.partition(":-")
        if not name or not (name[0].isalpha() or name[0] == "_") or not all(c.isalnum() or c == "_" for c in name):
            issues.append(src.issue(path, f"'${{{expr}}}' is not a valid environment variable reference"))
            return text
        env = os.environ.get(name)
        if env is None:
            if not sep:
                issues.append(
                    src.issue(path, f"environment variable {name} is not set (use ${{{name}:-default}} for a default)")
                )
                return text
            env = default
        src.secret_paths.add(path)
        out.append(env)
        i = end + 1
    return "".join(out)
