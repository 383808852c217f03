"""The generated configuration reference."""

from __future__ import annotations

from pathlib import Path


def test_config_reference_is_current() -> None:
    """docs/config-reference.md is exactly what the schema generates (regenerate it when this fails)."""
    from bastion.config.reference import render

    committed = Path(__file__).parents[2] / "docs" / "config-reference.md"
    assert committed.read_text() == render(), "run: python -m bastion.config.reference > docs/config-reference.md"
