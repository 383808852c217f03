"""bench/response_stage.py measures what it says: its scenarios' bodies and outcomes.

No timing here: each scenario's call is run once, and what the stage did to the body is
checked (nothing in ``declared`` and ``names``, one property per record in ``filtered``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import response_stage
from bastion.types import Exchange, Request, Response


def test_scenarios_do_what_they_are_named_for() -> None:
    """The 1 KB bodies are about 1 KB; ``declared`` and ``names`` leave the body as it came
    (the same bytes object); ``filtered`` removes the two undeclared members of each record."""
    found = response_stage.scenarios(1024)
    for name, (chain, raw) in found.items():
        assert 1024 <= len(raw) < 1400
        exchange = Exchange(Request("GET", "/users", "/users", "", []), "b")
        exchange.response = Response(200, [("content-type", "application/json")], raw)
        assert chain.response(exchange) is None
        sent = exchange.response.body
        if name == "filtered":
            records = orjson.loads(raw)
            assert orjson.loads(sent or b"") == [response_stage.record(r["id"], False) for r in records]
            paths = [f"/{i}/{m}" for i in range(5) for m in ("address/geo_shard", "internal_score")]
            assert exchange.facts["response"] == {"undeclared": 2 * len(records), "paths": paths}
        else:
            assert sent is raw


def test_quick_run_prints_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    """``--quick`` runs every size and scenario (3 calls each) and prints a line for each."""
    response_stage.main(["--quick"])
    out = capsys.readouterr().out
    assert out.count("x\n") == 8
