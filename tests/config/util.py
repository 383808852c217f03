"""Helpers of the configuration tests: write a file, load it expecting errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bastion.config import ConfigError, load_config


def write(tmp_path: Path, text: str, name: str = "bastion.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(i) for i in info.value.issues]
