"""Prometheus exposition of the workers' metric snapshots.

Workers write ``worker-<pid>.json`` each second (see ``bastion.proxy.metrics``). The
supervisor sums them; when a worker exits, its last snapshot is folded into a
``retired`` total so counters never go backwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from bastion.proxy.metrics import DEFINITIONS, LATENCY_BUCKETS, METRICS, Metrics

#: Where each histogram's per-service counts are in a snapshot.
HISTOGRAM_KEYS = {
    "bastion_request_duration_seconds": "histogram",
    "bastion_upstream_duration_seconds": "upstream_histogram",
}


def _empty() -> dict[str, Any]:
    return {"counters": {}, "gauges": {}, "labeled_gauges": {}, "histogram": {}, "upstream_histogram": {}}


def _add_histograms(into: dict[str, Any], histograms: dict[str, Any]) -> None:
    for service, h in histograms.items():
        cur = into.setdefault(service, {"counts": [0] * (len(LATENCY_BUCKETS) + 1), "sum": 0.0})
        cur["counts"] = [a + b for a, b in zip(cur["counts"], h["counts"], strict=True)]
        cur["sum"] += h["sum"]


def _merge(into: dict[str, Any], snap: dict[str, Any], *, gauges: bool) -> None:
    for name, rows in snap.get("counters", {}).items():
        table = into["counters"].setdefault(name, {})
        for labels, value in rows:
            key = tuple(labels)
            table[key] = table.get(key, 0.0) + value
    if gauges:  # a gauge is a live worker's state: a retired worker's is gone with it
        for name, value in snap.get("gauges", {}).items():
            into["gauges"][name] = into["gauges"].get(name, 0.0) + value
        for name, rows in snap.get("labeled_gauges", {}).items():
            table = into["labeled_gauges"].setdefault(name, {})
            for labels, value in rows:
                key = tuple(labels)
                table[key] = table.get(key, 0.0) + value
    for where in HISTOGRAM_KEYS.values():
        _add_histograms(into[where], snap.get(where, {}))


class SnapshotCollector(Collector):
    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self.retired = _empty()

    def retire(self, pid: int) -> None:
        """Fold a dead worker's last snapshot into the running totals."""
        path = self.directory / f"worker-{pid}.json"
        try:
            snap = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return
        _merge(self.retired, snap, gauges=False)
        os.unlink(path)

    def totals(self) -> dict[str, Any]:
        total = _empty()
        for name, table in self.retired["counters"].items():
            total["counters"][name] = dict(table)
        for where in HISTOGRAM_KEYS.values():
            _add_histograms(total[where], self.retired[where])
        for path in self.directory.glob("worker-*.json"):
            try:
                snap = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
            _merge(total, snap, gauges=True)
        return total

    def collect(self) -> Iterator[Metric]:
        return families(self.totals())


class ProcessCollector(Collector):
    """This process's own metrics, read live (the embedded mode: one process, no snapshots)."""

    def __init__(self, metrics: Metrics = METRICS) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        total = _empty()
        _merge(total, self.metrics.snapshot(), gauges=True)
        return families(total)


def families(total: dict[str, Any]) -> Iterator[Metric]:
    """The Prometheus metric families of summed snapshots (:meth:`SnapshotCollector.totals`)."""
    for d in DEFINITIONS:
        name = d.name
        family: Metric
        if d.kind == "counter":
            family = CounterMetricFamily(name, d.help, labels=list(d.labels))
            for labels, value in sorted(total["counters"].get(name, {}).items()):
                family.add_metric(list(labels), value)
        elif d.kind == "gauge" and d.labels:
            family = GaugeMetricFamily(name, d.help, labels=list(d.labels))
            for labels, value in sorted(total["labeled_gauges"].get(name, {}).items()):
                family.add_metric(list(labels), value)
        elif d.kind == "gauge":
            family = GaugeMetricFamily(name, d.help, value=total["gauges"].get(name, 0.0))
        else:
            family = HistogramMetricFamily(name, d.help, labels=list(d.labels))
            for service, h in sorted(total[HISTOGRAM_KEYS[name]].items()):
                cumulative = 0
                buckets = []
                for bound, count in zip((*LATENCY_BUCKETS, float("inf")), h["counts"], strict=True):
                    cumulative += count
                    buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
                family.add_metric([service], buckets, h["sum"])
        yield family
