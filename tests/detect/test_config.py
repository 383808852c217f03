"""The ``detectors:`` settings: the documented example loads, detectors are off by
default, and mistakes (a plain webhook secret, a relative probe path) are named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bastion.config import load_config
from tests.config.util import errors_of, write

DOC = Path(__file__).parents[2] / "docs" / "detectors.md"
SERVICE = "services: [{name: a, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]\n"


def test_the_documented_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/detectors.md's first configuration is valid as written: windows are parsed into
    seconds and the webhook secret comes from the environment (tests/docs checks the others)."""
    monkeypatch.setenv("ALERT_WEBHOOK_SECRET", "from-the-env")
    example = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)[0]
    detectors = load_config(write(tmp_path, SERVICE + example)).config.detectors
    assert detectors.enabled
    assert (detectors.token_sharing.max_ips, detectors.token_sharing.window) == (5, 600.0)
    assert detectors.webhooks[0].secret == "from-the-env"
    assert detectors.webhooks[1].format == "slack"


def test_off_by_default(tmp_path: Path) -> None:
    """Without ``detectors:`` nothing is detected."""
    assert not load_config(write(tmp_path, SERVICE)).config.detectors.enabled


def test_a_plain_webhook_secret_is_refused(tmp_path: Path) -> None:
    """A webhook secret written in the file is refused, naming the field, not the value."""
    path = write(tmp_path, SERVICE + "detectors: {enabled: true, webhooks: [{url: 'http://h/x', secret: hunter2}]}\n")
    errors = errors_of(path)
    assert any("secret" in e and str(path) in e for e in errors), errors
    assert not any("hunter2" in e for e in errors)


def test_mistakes_are_named(tmp_path: Path) -> None:
    """A probe path without its leading slash, or a webhook that is not an http(s) URL, is an
    error naming the field and what is wrong."""
    path = write(tmp_path, SERVICE + "detectors: {scanner: {probe_paths: ['.env']}, webhooks: [{url: 'ftp://h'}]}\n")
    text = "\n".join(errors_of(path))
    assert "probe_paths" in text and "a probe path starts with '/', got '.env'" in text
    assert "webhooks" in text and "starts with http:// or https://" in text
