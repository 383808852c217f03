"""The shared GoTestWAF corpus stays above the issue's targets (skipped without it, failed in CI)."""

from __future__ import annotations

import json

from bastion.stages.detection import DetectionEngine
from bastion.types import Request
from tests.corpora import GOTESTWAF, require


def test_gotestwaf_targets(engine: DetectionEngine) -> None:
    """At paranoia 1: >= 95% of attacks and <= 2% of the benign requests blocked."""
    attacks = blocked_attacks = benign = blocked_benign = 0
    for line in require(GOTESTWAF).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        target = row["path"]
        path, _, query = target.partition("?")
        request = Request(row["method"], target, path, query, [(k.lower(), v) for k, v in row["headers"]])
        request.body = (row.get("body") or "").encode() or None
        blocked = engine.evaluate(request).block_category is not None
        if row["expect_block"]:
            attacks += 1
            blocked_attacks += blocked
        else:
            benign += 1
            blocked_benign += blocked
    assert blocked_attacks / attacks >= 0.95
    assert blocked_benign / benign <= 0.02
