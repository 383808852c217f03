"""bastion.yaml read for the embedded mode: what it leaves out, ignores and refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from bastion.asgi.config import is_embedded, load_any, load_embedded
from bastion.cli.app import app as cli
from bastion.config.errors import ConfigError

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "t", "version": "1"},
    "security": [],
    "paths": {"/items": {"get": {"operationId": "listItems", "responses": {"200": {"description": "ok"}}}}},
}


def write(folder: Path, config: dict[str, Any], openapi: dict[str, Any] | None = None) -> Path:
    (folder / "openapi.yaml").write_text(yaml.safe_dump(openapi or OPENAPI))
    path = folder / "bastion.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def service(**extra: Any) -> dict[str, Any]:
    return {"name": "items", "openapi": "openapi.yaml", **extra}


def test_services_need_no_upstream(tmp_path: Path) -> None:
    """A service without ``upstream`` loads (the application answers its routes), with the
    same routes as the gateway would make of its OpenAPI document."""
    loaded = load_embedded(write(tmp_path, {"services": [service()]}))
    assert [r.id for r in loaded.routes] == ["listItems"]
    assert loaded.warnings == ()


def test_ignored_settings_are_warned_about(tmp_path: Path) -> None:
    """``upstream``, ``listen.port`` and ``admin`` load but are named as ignored, with their
    line, so a user does not think they do something here."""
    config = {
        "listen": {"port": 8080, "limits": {"max_body_bytes": 1000}},
        "admin": {"port": 9090},
        "services": [service(upstream="http://127.0.0.1:9")],
    }
    loaded = load_embedded(write(tmp_path, config))
    fields = {w.field: w for w in loaded.warnings}
    assert set(fields) == {"listen.port", "admin", "services[0].upstream"}
    assert all("ignored in embedded mode" in w.message for w in loaded.warnings)
    assert fields["listen.port"].line == 2
    assert loaded.config.listen.limits.max_body_bytes == 1000  # limits do apply


def test_listen_tls_is_refused(tmp_path: Path) -> None:
    """``listen.tls`` is a configuration error naming the file, line and field: TLS (and any
    client certificate) is the ASGI server's, and a setting that cannot be honoured is never
    silently dropped."""
    config = {"listen": {"tls": {"cert": "c.pem", "key": "k.pem"}}, "services": [service()]}
    with pytest.raises(ConfigError) as caught:
        load_embedded(write(tmp_path, config))
    [issue] = caught.value.issues
    assert (issue.field, issue.line) == ("listen.tls", 2)
    assert "not available in embedded mode" in issue.message


def test_oauth_server_is_refused(tmp_path: Path) -> None:
    """The built-in OAuth server's endpoints are the gateway's own: refused, not left unserved."""
    config = {"services": [service()], "oauth_server": {"enabled": True}}
    with pytest.raises(ConfigError, match=r"oauth_server\.enabled: not available in embedded mode"):
        load_embedded(write(tmp_path, config))


def test_client_certificate_routes_are_refused(tmp_path: Path) -> None:
    """A route authenticated by a client certificate (mutualTLS) is refused at load: the
    embedded mode never sees the certificate, so the route could only ever answer 401."""
    openapi = {
        **OPENAPI,
        "security": [{"cert": []}],
        "components": {"securitySchemes": {"cert": {"type": "mutualTLS"}}},
    }
    with pytest.raises(ConfigError) as caught:
        load_embedded(write(tmp_path, {"services": [service()]}, openapi))
    [issue] = caught.value.issues
    assert issue.field == "auth (listItems)"
    assert "client certificate (mutualTLS)" in issue.message
    assert issue.file.endswith("openapi.yaml#/paths/~1items/get")


def test_graphql_schema_introspection_is_refused(tmp_path: Path) -> None:
    """``schema: introspect`` on a GraphQL route is refused at load, naming the route: the
    embedded mode has no upstream to ask, so the route could only ever answer 503."""
    config = {"services": [service(policies={"graphql": {"schema": "introspect"}})]}
    with pytest.raises(ConfigError) as caught:
        load_embedded(write(tmp_path, config))
    [issue] = caught.value.issues
    assert issue.field == "graphql.schema (listItems)"
    assert "the embedded mode has no upstream" in issue.message


def test_gateway_errors_are_still_reported(tmp_path: Path) -> None:
    """Everything else is the gateway's schema: an unknown field is the loader's own error."""
    with pytest.raises(ConfigError, match="listn"):
        load_embedded(write(tmp_path, {"listn": {}, "services": [service()]}))


def test_is_embedded_and_the_cli(tmp_path: Path) -> None:
    """A file whose services name no upstream is the embedded mode's: ``bastion check`` says
    so and lists its routes, where the gateway's loader alone would refuse it; a gateway's file
    is loaded as before."""
    embedded = write(tmp_path, {"services": [service()]})
    assert is_embedded(embedded)
    assert load_any(embedded).routes[0].id == "listItems"
    result = CliRunner().invoke(cli, ["check", "-c", str(embedded)])
    assert result.exit_code == 0, result.output
    assert "valid for the embedded mode (bastion.asgi): 1 service(s), 1 route(s)" in result.output
    gateway = tmp_path / "gateway.yaml"
    gateway.write_text(yaml.safe_dump({"services": [service(upstream="http://127.0.0.1:9")]}))
    assert not is_embedded(gateway)
    assert load_any(gateway).config.services[0].upstream.targets[0].url == "http://127.0.0.1:9"
