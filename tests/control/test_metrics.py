"""The supervisor's Prometheus view of the workers' metric snapshots: summed across workers,
and never going backwards when a worker exits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from bastion.control.metrics import SnapshotCollector
from bastion.proxy.metrics import LATENCY_BUCKETS, Metrics


def snapshot(requests: float, connections: float, fast: int, slow: int) -> dict[str, Any]:
    """A worker's snapshot file as ``bastion.proxy.metrics`` writes it."""
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    counts[0], counts[-1] = fast, slow
    return {
        "counters": {"bastion_requests": [[["books", "listBooks", "200"], requests]]},
        "gauges": {"bastion_client_connections": connections},
        "histogram": {"books": {"counts": counts, "sum": fast * 0.001 + slow * 100.0}},
    }


def write(directory: Path, pid: int, snap: dict[str, Any]) -> None:
    (directory / f"worker-{pid}.json").write_bytes(orjson.dumps(snap))


def exposition(collector: SnapshotCollector) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode()


def test_workers_are_summed(tmp_path: Path) -> None:
    """Counters, gauges and latency histograms of every live worker add up."""
    write(tmp_path, 101, snapshot(5, 2, fast=4, slow=1))
    write(tmp_path, 102, snapshot(7, 3, fast=6, slow=1))
    text = exposition(SnapshotCollector(str(tmp_path)))
    assert 'bastion_requests_total{code="200",route="listBooks",service="books"} 12.0' in text
    assert "bastion_client_connections 5.0" in text
    assert 'bastion_request_duration_seconds_bucket{le="+Inf",service="books"} 12.0' in text
    assert f'bastion_request_duration_seconds_bucket{{le="{LATENCY_BUCKETS[0]!r}",service="books"}} 10.0' in text


def test_a_retired_worker_keeps_its_counts_but_not_its_gauges(tmp_path: Path) -> None:
    """When a worker exits its counters and histogram stay in the totals (counters never go
    backwards), its gauges leave them, and its file is removed."""
    collector = SnapshotCollector(str(tmp_path))
    write(tmp_path, 101, snapshot(5, 2, fast=4, slow=1))
    write(tmp_path, 102, snapshot(7, 3, fast=6, slow=1))
    collector.retire(101)
    assert not (tmp_path / "worker-101.json").exists()
    totals = collector.totals()
    assert totals["counters"]["bastion_requests"] == {("books", "listBooks", "200"): 12.0}
    assert totals["gauges"] == {"bastion_client_connections": 3.0}
    assert totals["histogram"]["books"]["counts"][-1] == 2
    write(tmp_path, 103, snapshot(1, 1, fast=1, slow=0))  # the replacement worker
    assert collector.totals()["counters"]["bastion_requests"] == {("books", "listBooks", "200"): 13.0}


def test_unreadable_snapshots_are_skipped(tmp_path: Path) -> None:
    """A snapshot being replaced or cut short is left out of this scrape rather than failing
    it; retiring a worker that left no snapshot changes nothing."""
    write(tmp_path, 101, snapshot(5, 2, fast=4, slow=1))
    (tmp_path / "worker-102.json").write_bytes(b'{"counters": {')
    collector = SnapshotCollector(str(tmp_path))
    collector.retire(999)
    assert collector.totals()["counters"]["bastion_requests"] == {("books", "listBooks", "200"): 5.0}
    assert "bastion_requests_total" in exposition(collector)


def test_a_worker_counts_each_request_into_its_code_and_the_first_bucket_not_below_its_latency() -> None:
    """A worker's snapshot (what this collector reads) counts requests per service, route and
    code, an unusual code included, and puts a latency in the first bucket whose bound is not
    below it, as Prometheus's ``le`` buckets mean it: exactly on a bound counts in that bound's
    bucket, past the last bound in +Inf; the sum is the latencies' sum."""
    metrics = Metrics()
    for seconds in (0.0, LATENCY_BUCKETS[0], LATENCY_BUCKETS[0] * 1.5, LATENCY_BUCKETS[-1], 99.0):
        metrics.count_request("books", "listBooks", 200, seconds)
    metrics.count_request("books", "listBooks", 799, 0.0)
    snap = metrics.snapshot()
    assert sorted((*k, v) for k, v in snap["counters"]["bastion_requests"]) == [
        ("books", "listBooks", "200", 5.0), ("books", "listBooks", "799", 1.0)]
    expected = [0] * (len(LATENCY_BUCKETS) + 1)
    expected[0], expected[1], expected[-2], expected[-1] = 3, 1, 1, 1
    assert snap["histogram"]["books"]["counts"] == expected
    assert snap["histogram"]["books"]["sum"] == pytest.approx(LATENCY_BUCKETS[0] * 2.5 + LATENCY_BUCKETS[-1] + 99.0)


def test_upstream_state_is_a_live_workers_gauge_and_upstream_latency_a_histogram(tmp_path: Path) -> None:
    """The upstream-unavailable gauge carries labels and sums the live workers (two hold a
    target out, one of them exits: one left); the upstream latency histogram is kept per
    service like the request histogram, a retired worker's counts included."""
    target = ("books", "http://10.0.0.7:8000", "circuit_open")

    def worker(out: float, fast: int) -> dict[str, Any]:
        snap = snapshot(1, 0, fast=fast, slow=0)
        snap["labeled_gauges"] = {"bastion_upstream_unavailable": [[list(target), out]]}
        snap["upstream_histogram"] = {"books": {"counts": snap["histogram"]["books"]["counts"], "sum": 0.001}}
        return snap

    collector = SnapshotCollector(str(tmp_path))
    write(tmp_path, 101, worker(1.0, fast=2))
    write(tmp_path, 102, worker(1.0, fast=3))
    gauge = 'bastion_upstream_unavailable{service="books",target="http://10.0.0.7:8000",why="circuit_open"}'
    assert f"{gauge} 2.0" in exposition(collector)
    collector.retire(101)
    text = exposition(SnapshotCollector(str(tmp_path)))  # a fresh view: only worker 102 is live
    assert f"{gauge} 1.0" in text
    assert collector.totals()["labeled_gauges"]["bastion_upstream_unavailable"] == {target: 1.0}
    assert collector.totals()["upstream_histogram"]["books"]["counts"][0] == 5  # 101's counts stay


def test_a_worker_snapshots_its_upstream_latency_and_labelled_gauges() -> None:
    """A worker's snapshot carries the upstream histogram per service and the labelled gauges
    as label/value rows (an upstream back in rotation reads 0, not absent)."""
    metrics = Metrics()
    metrics.observe_upstream("books", 0.0002)
    labels = ("books", "http://10.0.0.7:8000", "unhealthy")
    metrics.labeled_gauge_add("bastion_upstream_unavailable", labels, 1.0)
    metrics.labeled_gauge_add("bastion_upstream_unavailable", labels, -1.0)
    snap = metrics.snapshot()
    assert snap["upstream_histogram"]["books"]["counts"][0] == 1
    assert snap["labeled_gauges"] == {"bastion_upstream_unavailable": [[list(labels), 0.0]]}
