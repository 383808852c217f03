"""Each atheris harness runs for a bounded time and finds no crash, hang or slow input.

``BASTION_FUZZ_SECONDS`` (default 8) is each harness' time budget and ``BASTION_FUZZ_RUNS``
(default 1 000 000) its most executions; ``BASTION_FUZZ_CORPUS`` keeps the corpora in a
directory across runs (a fresh seeded one otherwise). For a long local run:
``BASTION_FUZZ_SECONDS=600 pytest tests/fuzz -s``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is not installed (Linux, Python < 3.12 only)")

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("BASTION_FUZZ_SECONDS", "8"))
RUNS = int(os.environ.get("BASTION_FUZZ_RUNS", "1000000"))
HARNESSES = ["fuzz_normalize", "fuzz_detection", "fuzz_validation"]


@pytest.mark.timeout(SECONDS + 120)
@pytest.mark.parametrize("harness", HARNESSES)
def test_harness_finds_nothing(harness: str, tmp_path: Path) -> None:
    """The harness exits 0: no exception, no input over 2 s (libFuzzer) or 0.5 s (the harness)."""
    kept = os.environ.get("BASTION_FUZZ_CORPUS")
    corpus = Path(kept) / harness if kept else tmp_path / "corpus"
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    command = [
        sys.executable, "-m", f"tests.fuzz.{harness}",
        f"-runs={RUNS}", f"-max_total_time={SECONDS}", "-timeout=2", "-rss_limit_mb=2048",
        f"-artifact_prefix={artifacts}/", "-print_final_stats=1", str(corpus),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, errors="replace",
                          timeout=SECONDS + 110)
    log = done.stderr
    runs = re.findall(r"^Done (\d+) runs", log, re.MULTILINE)
    slowest = re.findall(r"^#slowest ([0-9.]+) s", log, re.MULTILINE)
    print(f"{harness}: {runs[-1] if runs else '?'} runs, slowest input {slowest[-1] if slowest else '< 0.05'} s")
    if done.returncode != 0:
        crashes = sorted(str(p) for p in artifacts.iterdir())
        tail = "\n".join(log.splitlines()[-40:])
        pytest.fail(f"{harness} exited with {done.returncode}; failing inputs: {crashes or 'none saved'}\n{tail}")
