"""The maintainers' request corpora, kept outside the repository (``../shared/corpora/``).

On a developer's machine without them, the tests that read them are skipped. In CI
(``CI=true``) they are a failure instead: the detection targets must be checked on every
landing, and a missing folder must not pass as a green run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora"
GOTESTWAF = SHARED / "gotestwaf-requests.jsonl"
CRS_REGRESSION = SHARED / "crs-regression-requests.jsonl"


def require(path: Path) -> Path:
    """``path`` if it exists; otherwise skip the test, or fail it under CI."""
    if path.exists():
        return path
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{path} is missing: CI must check the detection targets on the shared corpora")
    pytest.skip(f"{path} is not on this machine")
