"""Reading configuration files: ${VAR} interpolation, and values from the environment kept
out of error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.config import load_config

from .util import errors_of, write


def test_secret_from_environment_is_never_echoed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A value that came from ${VAR} is not repeated in an error message (it may be a secret)."""
    monkeypatch.setenv("BASTION_TEST_PORT", "hunter2-secret")
    issues = errors_of(
        write(
            tmp_path,
            """\
        listen: {port: "${BASTION_TEST_PORT}"}
        services:
          - {name: a, upstream: "http://127.0.0.1:1", routes: [{path: /}]}
        """,
        )
    )
    assert any("listen.port" in i for i in issues)
    assert not any("hunter2" in i for i in issues)


def test_environment_interpolation_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """${VAR} is replaced from the environment, ${VAR:-default} falls back, $${ stays literal."""
    monkeypatch.setenv("BASTION_TEST_UPSTREAM", "http://127.0.0.1:9555")
    loaded = load_config(
        write(
            tmp_path,
            """\
        listen: {port: "${BASTION_TEST_UNSET_PORT:-8181}"}
        access_log: {path: "/tmp/a$${x}"}
        services:
          - name: a
            upstream: ${BASTION_TEST_UPSTREAM}
            routes: [{path: /}]
        """,
        )
    )
    assert loaded.config.listen.port == 8181
    assert loaded.config.services[0].upstream.targets[0].url == "http://127.0.0.1:9555"
    assert loaded.config.access_log.path == "/tmp/a${x}"
