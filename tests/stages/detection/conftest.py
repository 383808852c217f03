"""Shared fixtures: the engine compiled once per paranoia level."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bastion.stages.detection import DetectionConfig, DetectionEngine


@pytest.fixture(scope="session")
def engine() -> DetectionEngine:
    """The default engine: block mode, paranoia 1, threshold 5."""
    return DetectionEngine(DetectionConfig())
