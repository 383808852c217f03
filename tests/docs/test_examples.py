"""Every YAML example in the README and docs/ is valid: users copy them as they are.

Each fenced ```yaml block is parsed, recognised by its top-level keys and checked the way
Bastion itself reads such a file:

- a piece of ``bastion.yaml`` (or of one service in it) is completed into a whole configuration (a service and the
  files it names, created in a temporary folder) and loaded by ``load_config``, the same
  loader ``bastion check`` runs, with every stage's compile step (``load_embedded`` when
  its services name no upstream: the embedded mode's, which ``bastion check`` also reads);
- a piece of an OpenAPI document (``paths``, ``components`` or an ``x-bastion-*`` extension)
  is put into a document that a service imports, and loaded the same way;
- a scanner identities file is read by the scanner's own parser.

A block that fits none of these fails the test, so a new kind of example gets a check here
rather than going unchecked. The README's two main examples are also run by
``tests/e2e/test_readme.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bastion.asgi.config import load_embedded
from bastion.certs import generate_self_signed
from bastion.config.errors import ConfigError
from bastion.config.loader import load_config
from bastion.config.model import GatewayConfig, Service
from bastion.config.yamlsrc import Source
from bastion.tester.scan.identities import parse_identities, parse_scope

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```yaml[ \t]*\n(.*?)^```", re.S | re.M)
CONFIG_KEYS = set(GatewayConfig.model_fields)
SERVICE_KEYS = set(Service.model_fields)
OPENAPI_KEYS = {"openapi", "info", "paths", "components", "servers", "security", "tags"}
TESTER_KEYS = {"identities", "include", "exclude"}
# Environment variables the examples reference as ${NAME}.
EXAMPLE_ENV = {
    "REDIS_PASSWORD": "example-password",
    "ALICE_PASSWORD": "a",
    "BOB_TOKEN": "b",
    "BOB_EXPIRED": "c",
    "ROOT_PASSWORD": "r",
    "LEGACY_HS256_SECRET": "x" * 32,
    "INTROSPECTION_SECRET": "s",
    "PGPASSWORD": "example-password",
    "BILLING_API_KEY": "k",
    "BILLING_PASSWORD": "p",
    "ALERT_WEBHOOK_SECRET": "example-secret",
    "SMTP_PASSWORD": "example-password",
    "OTEL_TOKEN": "Bearer example-token",
}


@dataclass(frozen=True)
class Example:
    file: Path
    line: int
    text: str

    @property
    def id(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def examples() -> list[Example]:
    out: list[Example] = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            out.append(Example(doc, text.count("\n", 0, match.start()) + 1, match.group(1)))
    return out


EXAMPLES = examples()


def test_examples_were_found() -> None:
    """The collector sees the docs' examples (a broken pattern would make every test below vacuous)."""
    assert len(EXAMPLES) >= 15
    assert {e.file.name for e in EXAMPLES} >= {"README.md", "identity.md", "ratelimit.md"}


def _minimal_openapi() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "docs example", "version": "1"},
        "paths": {
            "/items/{id}": {
                "get": {"operationId": "getItem", "security": [], "responses": {"200": {"description": "ok"}}},
            },
        },
    }


def _write_openapi(path: Path, fragment: dict[str, Any] | None = None) -> None:
    doc = _minimal_openapi()
    if fragment:
        for key, value in fragment.items():
            doc[key] = value
        doc.setdefault("info", {"title": "docs example", "version": "1"})
        doc["openapi"] = "3.1.0"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")


#: The configuration fields that name a file.
FILE_FIELDS = {"cert", "key", "client_ca", "ca", "ca_file", "openapi", "pepper_file", "schema"}
#: What a GraphQL schema file an example names holds (``policies.graphql.schema``).
EXAMPLE_SDL = "type Query { me: User }\ntype User { id: ID!  name: String! }\n"


def _files_named(node: Any) -> list[str]:
    """Every relative file name a configuration piece mentions (certificates, OpenAPI documents)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and key in FILE_FIELDS:
                found.append(value)
            found.extend(_files_named(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_files_named(item))
    return found


def _create_files(folder: Path, config: dict[str, Any]) -> None:
    pem = [name for name in _files_named(config) if name.endswith((".pem", ".key", ".crt"))]
    if pem:
        cert, key = folder / "_example_cert.pem", folder / "_example_key.pem"
        generate_self_signed(cert, key, hosts=["localhost"])
        for name in pem:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            source = key if "key" in Path(name).name else cert
            if not target.exists():
                target.write_bytes(source.read_bytes())
    for name in _files_named(config):
        if name.endswith((".yaml", ".yml", ".json")) and not (folder / name).exists():
            _write_openapi(folder / name)
        if name.endswith(".graphql") and not (folder / name).exists():
            (folder / name).write_text(EXAMPLE_SDL, encoding="utf-8")


def _load_config_piece(folder: Path, piece: dict[str, Any]) -> None:
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 18080},
        "admin": {"host": "127.0.0.1", "port": 19090},
        "services": [{"name": "example", "upstream": "http://127.0.0.1:9", "openapi": "example.openapi.yaml"}],
    }
    _write_openapi(folder / "example.openapi.yaml")
    for key, value in piece.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    _create_files(folder, config)
    path = folder / "bastion.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    # A piece whose services name no upstream is the embedded mode's (docs/embedded.md).
    embedded = all("upstream" not in service for service in config["services"])
    (load_embedded if embedded else load_config)(path)


def _operation_piece(piece: dict[str, Any]) -> dict[str, Any]:
    """An operation's ``x-bastion-*`` extensions, put on an operation of a small document."""
    operation: dict[str, Any] = {
        "operationId": "getUser",
        "security": [],
        "parameters": [{"name": "username", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "ok"}},
        **piece,
    }
    return {"paths": {"/users/{username}": {"get": operation}}}


def check(example: Example, folder: Path) -> None:
    data = yaml.safe_load(example.text)
    assert isinstance(data, dict), "an example is a YAML mapping"
    keys = set(data)
    if keys <= TESTER_KEYS:
        src = Source(file=example.id, data=data)
        if "identities" in data:
            parse_identities(src)
        parse_scope(src)
    elif keys <= CONFIG_KEYS:
        _load_config_piece(folder, data)
    elif keys <= SERVICE_KEYS:  # a piece of one service (its routes, say)
        service = {"name": "example", "upstream": "http://127.0.0.1:9", **data}
        _load_config_piece(folder, {"services": [service]})
    elif keys <= OPENAPI_KEYS:
        _write_openapi(folder / "piece.openapi.yaml", data)
        _load_config_piece(folder, {"services": [
            {"name": "example", "upstream": "http://127.0.0.1:9", "openapi": "piece.openapi.yaml"}]})
    elif all(k.startswith("x-bastion-") for k in keys):
        _write_openapi(folder / "piece.openapi.yaml", _operation_piece(data))
        _load_config_piece(folder, {"services": [
            {"name": "example", "upstream": "http://127.0.0.1:9", "openapi": "piece.openapi.yaml"}]})
    else:
        pytest.fail(f"{example.id}: top-level keys {sorted(keys)} are neither bastion.yaml, OpenAPI nor "
                    "a scanner identities file; teach tests/docs/test_examples.py this kind of example")


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_is_valid(example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example loads as Bastion would load it (no ConfigError, no other exception)."""
    for name, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BASTION_PEPPER", "p" * 43)
    try:
        check(example, tmp_path)
    except ConfigError as exc:
        pytest.fail(f"{example.id}: {exc}")


@pytest.mark.parametrize("text", [
    "policies:\n  ratelimit: {limit: -1, window: 10s}\n",
    "consumers:\n  - {name: alice, rolez: [user]}\n",
    "paths:\n  /x:\n    get:\n      x-bastion-rate-limit: {limit: 5, window: forever}\n"
    "      responses: {'200': {description: ok}}\n",
    "x-bastion-access:\n  owner: {param: username, in: nowhere}\n",
])
def test_a_broken_example_fails(text: str, tmp_path: Path) -> None:
    """The checks above can fail: an example with a wrong field or value raises ConfigError."""
    with pytest.raises(ConfigError):
        check(Example(ROOT / "docs" / "broken.md", 1, text), tmp_path)
