"""The examples of docs/response.md are real: its YAML loads as a configuration (the first
block a service, the second the OpenAPI operation it serves), and its masked-error example
says what the stage says."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from bastion.config import load_config
from bastion.config.model import Route
from bastion.stages.cors import CorsConfig
from bastion.stages.cors.origins import Origins
from bastion.stages.headers import HeadersConfig
from bastion.stages.response import ResponseFilterStage
from bastion.stages.response.stage import _MASKED_DETAIL

DOC = Path(__file__).resolve().parents[3] / "docs" / "response.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"^ *```{kind}\n(.*?)^ *```", DOC.read_text(), flags=re.S | re.M)


def test_the_yaml_examples_load(tmp_path: Path) -> None:
    """The service example with the login operation example as its OpenAPI document loads;
    the login route gets the uniform answer and padding the example sets, every route the
    never_return list it names."""
    service, login = (yaml.safe_load(b) for b in blocks("yaml")[:2])
    api: dict[str, Any] = {"openapi": "3.1.0", "info": {"title": "users", "version": "1"}, **login}
    (tmp_path / "users.yaml").write_text(yaml.safe_dump(api))
    (tmp_path / "bastion.yaml").write_text(yaml.safe_dump(service))
    loaded = load_config(tmp_path / "bastion.yaml")
    (route,) = loaded.routes
    (stage,) = [s for s in route.built if isinstance(s, ResponseFilterStage)]
    uniform = stage.settings.uniform_failures
    assert uniform is not None and uniform.status == 401 and uniform.min_latency == 0.3
    assert stage.names == {"password", "password_hash", "secret"} and stage.pointers == (("data", "*", "token"),)


def test_the_masked_error_example_is_what_the_stage_sends() -> None:
    """The problem document shown for a masked 5xx has the stage's own detail text."""
    shown = json.loads(blocks("json")[0].replace('"0f3c..."', '"x"'))
    assert shown["detail"] == _MASKED_DETAIL


def test_the_headers_example_is_a_route() -> None:
    """The Cache-Control override example is a valid route whose headers policy takes it."""
    (example,) = [b for b in blocks("yaml") if "authenticated_cache_control" in b]
    route = Route.model_validate(yaml.safe_load(example)["routes"][0])
    assert HeadersConfig.model_validate(route.policies["headers"]).authenticated_cache_control == "private, max-age=60"


def test_the_cors_example_is_valid() -> None:
    """The CORS example's policy is valid as written, and allows the origins it says."""
    (example,) = [b for b in blocks("yaml") if "cors:" in b]
    policy = CorsConfig.model_validate(yaml.safe_load(example)["policies"]["cors"])
    origins = Origins(policy.allow_origins)
    assert origins.allows("https://shop.example.com") and not origins.allows("https://example.org")
    assert policy.allow_credentials and policy.max_age == 600
