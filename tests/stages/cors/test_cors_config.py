"""The cors stage's settings: origin patterns, and the unsafe combinations refused at load
with the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from bastion.config import ConfigError, load_config
from bastion.stages.cors import CorsConfig
from bastion.stages.cors.origins import Origins


@pytest.mark.parametrize(("origin", "allowed"), [
    ("https://app.example.com", True),
    ("https://a.b.example.com", True),
    ("https://example.com", False),            # a pattern's subdomains only
    ("http://app.example.com", False),         # another scheme
    ("https://app.example.com:8443", False),   # another port
    ("https://evilexample.com", False),
    ("https://app.example.com.evil.test", False),
    ("https://x@app.example.com", False),
    ("https://-x.example.com", False),
    ("http://localhost:3000", True),
    ("http://localhost:3001", False),
])
def test_exact_origins_and_patterns(origin: str, allowed: bool) -> None:
    """``https://*.example.com`` is any subdomain over https on the default port, nothing else."""
    assert Origins(["https://*.example.com", "http://localhost:3000"]).allows(origin) is allowed


@pytest.mark.parametrize(("settings", "message"), [
    ({"allow_origins": ["*"], "allow_credentials": True}, "'*' in allow_origins cannot be combined"),
    ({"allow_origins": ["https://a.test"], "allow_headers": ["*"], "allow_credentials": True},
     "'*' in allow_headers cannot be combined"),
    ({"allow_origins": ["null"]}, "sandboxed frames"),
    ({"allow_origins": ["https://a.test/app"]}, "without a path"),
    ({"allow_origins": ["https://*example.com"]}, "a pattern is a scheme"),
    ({"allow_origins": []}, "at least 1"),
    ({"allow_origins": ["https://a.test"], "allow_methods": ["FETCH"]}, "not an HTTP method"),
])
def test_unsafe_or_malformed_settings_refused(settings: dict[str, object], message: str) -> None:
    """A wildcard with credentials, the null origin, paths, bad patterns, no origin at all and
    unknown methods are refused with a message that says why."""
    with pytest.raises(ValidationError, match=message):
        CorsConfig.model_validate(settings)


def test_wildcard_with_credentials_is_a_load_error_naming_file_and_field(tmp_path: Path) -> None:
    """In bastion.yaml, the error names the file, the line and ``policies.cors.allow_credentials``."""
    config = {"services": [{"name": "app", "upstream": "http://127.0.0.1:9", "routes": [
        {"path": "/x", "public": True, "policies": {"cors": {"allow_origins": ["*"], "allow_credentials": True}}}]}]}
    path = tmp_path / "bastion.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert str(path) in text and "policies.cors.allow_credentials" in text
    assert "cannot be combined with allow_credentials" in text
