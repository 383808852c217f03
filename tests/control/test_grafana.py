"""The Grafana dashboard in deploy/grafana/ queries only what Bastion exports: every metric
its expressions name is one of the workers' metric definitions, with the suffix Prometheus
gives its kind (``_total`` for a counter, ``_bucket`` for a histogram, none for a gauge),
and every label it filters or groups by is one that metric has."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bastion.proxy.metrics import DEFINITIONS

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "bastion.json"
SUFFIX = {"counter": "_total", "gauge": "", "histogram": "_bucket"}
#: What a series exposes, by its name in Prometheus: its labels (a histogram's ``le`` too).
EXPOSED = {
    d.name + SUFFIX[d.kind]: set(d.labels) | ({"le"} if d.kind == "histogram" else set()) for d in DEFINITIONS
}


def expressions() -> list[str]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    """Each ``bastion_*`` name in a panel's expression is exported under that exact name."""
    names = {n for e in expressions() for n in re.findall(r"\bbastion_[a-z_]+", e)}
    assert names, "the dashboard queries no Bastion metric"
    assert names <= set(EXPOSED), sorted(names - set(EXPOSED))


def test_every_label_the_dashboard_uses_is_the_metrics_own() -> None:
    """A selector ``metric{label=...}`` and a ``by (label, ...)`` around one metric use only
    labels that metric has (a wrong label would show an empty panel, not an error)."""
    for expr in expressions():
        for name, selector in re.findall(r"\b(bastion_[a-z_]+)\{([^}]*)\}", expr):
            used = {part.split("=")[0].strip("!~ ") for part in selector.split(",")}
            assert used <= EXPOSED[name], (expr, used - EXPOSED[name])
        metrics = set(re.findall(r"\bbastion_[a-z_]+", expr))
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            labels = {label.strip() for label in group.split(",")}
            assert any(labels <= EXPOSED[m] for m in metrics), (expr, labels)
