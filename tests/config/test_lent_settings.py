"""A stage's settings written inside another's: ``response: {redact: [...]}`` is the
``redact`` stage's settings (``StageSpec.lends``), in bastion.yaml and in OpenAPI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bastion.config import ConfigError, load_config

OPENAPI = """
openapi: 3.1.0
info: {title: t, version: "1"}
paths:
  /a:
    get:
      operationId: a
      security: []
      x-bastion-response: {schema: monitor, redact: [card, ssn]}
      responses: {"200": {description: ok}}
  /b:
    get:
      operationId: b
      security: []
      x-bastion-response: {redact: {types: [secrets], action: remove}}
      x-bastion-redact: {types: [card]}
      responses: {"200": {description: ok}}
"""


def _settings(path: Path) -> dict[str, Any]:
    """The one route's enabled stages and their settings."""
    (route,) = load_config(path).routes
    return {spec.name: config for spec, config in route.stages}


def test_redact_inside_response_in_bastion_yaml_is_the_redact_stage(tmp_path: Path) -> None:
    """``policies.response.redact`` (a bare list of types) builds the redact stage with those
    types, beside the response stage."""
    (tmp_path / "bastion.yaml").write_text(
        "services:\n  - name: s\n    upstream: http://127.0.0.1:9\n"
        "    routes: [{path: /, public: true, policies: {response: {schema: monitor, redact: [card, ssn]}}}]\n")
    settings = _settings(tmp_path / "bastion.yaml")
    assert settings["redact"].types == ["card", "ssn"]
    assert "response" in settings


def test_redact_inside_x_bastion_response_is_the_redact_stage(tmp_path: Path) -> None:
    """In OpenAPI, ``x-bastion-response: {redact: [...]}`` sets the operation's redaction;
    written both there and as ``x-bastion-redact`` on one operation is an error at that place."""
    (tmp_path / "api.yaml").write_text(OPENAPI)
    (tmp_path / "bastion.yaml").write_text(
        "services: [{name: s, upstream: 'http://127.0.0.1:9', openapi: api.yaml}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "bastion.yaml")
    text = str(info.value)
    assert "paths./b.get.x-bastion-response.redact" in text and "write these settings in one place" in text
    (tmp_path / "api.yaml").write_text(OPENAPI.split("  /b:")[0])
    settings = _settings(tmp_path / "bastion.yaml")
    assert settings["redact"].types == ["card", "ssn"]
    assert settings["response"].schema_ == "monitor"


def test_redact_set_twice_in_one_policies_mapping_is_an_error(tmp_path: Path) -> None:
    """``policies: {response: {redact: ...}, redact: ...}`` names the place and says why."""
    (tmp_path / "bastion.yaml").write_text(
        "policies: {response: {redact: [card]}, redact: {types: [ssn]}}\n"
        "services: [{name: s, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "bastion.yaml")
    assert "policies.response.redact" in str(info.value)
