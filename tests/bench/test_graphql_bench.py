"""bench/graphql_stage.py measures what it says: a typical 1 KB query that passes.

No timing here: each scenario's call is run, and its outcome and the stage's cache checked.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import graphql_stage
from bastion.stages.graphql import GraphQLStage


def test_the_query_is_typical_and_passes_every_scenario() -> None:
    """The request is about 1 KB and within the default limits (no scenario measures a
    refusal); ``cached`` keeps the document after the first call, ``uncached`` keeps none."""
    assert 900 <= len(graphql_stage.BODY) <= 1300
    found = graphql_stage.scenarios()
    for chain in found.values():
        run = graphql_stage.one_call(chain)
        assert run() is None and run() is None
    cached, uncached = found["cached"].request_stages[0], found["uncached"].request_stages[0]
    assert isinstance(cached, GraphQLStage) and isinstance(uncached, GraphQLStage)
    assert len(cached._cache) == 1 and not uncached._cache


def test_quick_run_prints_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    """``--quick`` runs every scenario (3 calls each) and prints a line for each."""
    graphql_stage.main(["--quick"])
    assert capsys.readouterr().out.count("us\n") == 3
