"""The benchmark's response-protection scenario and ``--path``: the JSON documents the upstream
serves, ``bastion-protect`` proving its stages are on, and the options that pick them.

Real servers (the upstream nginx, Bastion) on 127.0.0.1 and free ports; no load, no timing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import run as bench_run
from proxybench import documents
from proxybench.procs import ServerFailed, http_get
from proxybench.report import Sample, TargetRuns, protect_checks, summarize, table_cells
from proxybench.scenarios import BASTION_NONE, PROTECT, SCENARIOS, StartContext, select, start_scenario
from proxybench.servers import RunningServer, start_upstream
from proxybench.wrk import WrkResult

BASTION = Path(sys.executable).with_name("bastion")
needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")


def test_documents_are_realistic_deterministic_and_of_their_size() -> None:
    """Each document is the same bytes every time, valid JSON of orders, at least its target
    size and less than one order over it, and holds nothing redaction would mask (no run of
    13 or more digits, so no card number; no SSN shape)."""
    for path, size in documents.SIZES.items():
        body = documents.document(size)
        assert body == documents.document(size)
        doc = json.loads(body)
        assert doc["count"] == len(doc["orders"]) and doc["orders"][0]["customer"]["email"]
        one_order = len(json.dumps(doc["orders"][-1], separators=(",", ":")))
        assert size <= len(body) < size + one_order + 1, path
        assert not re.search(rb"\d[\d -]{11,}\d", body)
        assert not re.search(rb"\b\d{3}-\d{2}-\d{4}\b", body)


def _args(path: str) -> argparse.Namespace:
    return argparse.Namespace(mix=False, path=path)


@contextlib.contextmanager
def _servers(tmp_path: Path, *names: str) -> Iterator[list[RunningServer]]:
    with contextlib.ExitStack() as stack:
        upstream = start_upstream(stack, tmp_path, 1)
        ctx = StartContext(stack, tmp_path, upstream, 1, BASTION)
        by_name = {s.name: s for s in SCENARIOS}
        yield [upstream, *(start_scenario(by_name[name], ctx) for name in names)]


@needs_nginx
def test_protect_scenario_passes_every_path_and_stops_the_leak(tmp_path: Path) -> None:
    """Through ``bastion-protect`` (schema filter + redaction on), every path ``--path`` takes
    comes back exactly as the upstream sent it (nothing to filter or mask: the figures measure
    the scan), while ``/leak`` has its undeclared property removed and its card number masked.
    The same checks the run does before any load pass, and fail on ``bastion-none``."""
    by_name = {s.name: s for s in SCENARIOS}
    with _servers(tmp_path, PROTECT, BASTION_NONE) as (upstream, protect, none):
        for path in ("/", *documents.SIZES):
            assert http_get(upstream.port, path) == (200, bench_run.expected_body(path))
            bench_run.check_scenario(by_name[PROTECT], protect, _args(path))
        status, body = http_get(protect.port, documents.LEAK_PATH)
        assert status == 200
        order = json.loads(body)["orders"][0]
        assert documents.LEAK_UNDECLARED not in order and order["status"] == "paid"
        assert documents.LEAK_CARD not in order["note"] and order["note"].startswith("paid with ")
        # Without the stages the leak goes through: the check is what would catch it.
        assert http_get(none.port, documents.LEAK_PATH) == (200, documents.LEAK_BODY.encode())
        with pytest.raises(ServerFailed, match="response protection this scenario measures is not on"):
            bench_run.check_protects(by_name[PROTECT], none)


def test_path_option_takes_the_documents_only_for_plain_runs() -> None:
    """``--path`` defaults to ``/``, takes the documents' paths, refuses any other path and
    does not go with ``--mix`` (which sends its own requests)."""
    assert bench_run.parse_args([]).path == "/"
    assert bench_run.parse_args(["--path", "/orders-100k", "--no-write"]).path == "/orders-100k"
    for bad in (["--path", "/nope"], ["--path", "/orders-1k", "--mix"]):
        with pytest.raises(SystemExit):
            bench_run.parse_args(bad)


def test_asking_for_protect_brings_bastion_none_and_its_ratio() -> None:
    """``--only bastion-protect`` also runs Bastion with no stages, and the summary checks
    issue 16's target (≥ 0.8x) against it."""
    assert [s.name for s in select([PROTECT])] == ["direct", "nginx", BASTION_NONE, PROTECT]

    def runs(name: str, rps: float) -> TargetRuns:
        wrk = WrkResult(int(rps * 10), 10.0, rps, 500.0, 900.0, 0, 0)
        return TargetRuns(name, name, [Sample(wrk, 1.0)] * 3, [wrk] * 3)

    rows = summarize([runs("direct", 40000), runs("nginx", 20000), runs(BASTION_NONE, 10000),
                      runs(PROTECT, 7500)], (BASTION_NONE,))
    assert table_cells(rows, (BASTION_NONE,))[-1][4] == "0.75x"
    assert protect_checks(rows) == [
        ("response protection throughput ≥ 0.8x Bastion with no stages: 0.75x", False)]
