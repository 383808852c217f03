"""Configuration problems as the user reads them: ``file:line: field: message``."""

from __future__ import annotations

from bastion.config import ConfigError, ConfigIssue


def test_issue_names_file_line_and_field() -> None:
    """An issue prints where it is (line when known, '(top level)' without a field) and what."""
    assert str(ConfigIssue("bastion.yaml", 3, "listen.port", "must be at most 65535")) == (
        "bastion.yaml:3: listen.port: must be at most 65535"
    )
    assert str(ConfigIssue("api.yaml#/paths/~1a/get", None, "validation (getA)", "bad $ref")) == (
        "api.yaml#/paths/~1a/get: validation (getA): bad $ref"
    )
    top = ConfigIssue("bastion.yaml", 1, "", "expected a mapping")
    assert str(top) == "bastion.yaml:1: (top level): expected a mapping"


def test_error_carries_every_issue_one_a_line() -> None:
    """A ConfigError keeps its issues and says them all, one a line."""
    issues = [ConfigIssue("a.yaml", 1, "x", "first"), ConfigIssue("a.yaml", 2, "y", "second")]
    error = ConfigError(issues)
    assert error.issues == issues
    assert str(error) == "a.yaml:1: x: first\na.yaml:2: y: second"
