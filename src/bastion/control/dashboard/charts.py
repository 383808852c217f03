"""The overview's numbers and charts: audit records counted into time buckets, drawn as
inline SVG on the server (no chart library, no script: the page works offline and under a
CSP that allows no inline code)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

#: Windows the overview offers, and their bucket counts.
WINDOWS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "6h": timedelta(hours=6),
           "24h": timedelta(hours=24)}
BUCKETS = 30
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 600, 180, 48, 22, 10


@dataclass
class Bucket:
    start: datetime
    requests: int = 0
    #: Answers 500 and above (the gateway's or the upstream's failures).
    errors: int = 0
    blocked: int = 0
    latencies: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Totals:
    requests: int
    error_rate: float
    blocked_rate: float
    p50: float | None
    p95: float | None
    p99: float | None


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0-100) of sorted values; ``None`` when there are none."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def bucketize(rows: Iterable[tuple[datetime, int, str, float]], since: datetime,
              until: datetime) -> tuple[list[Bucket], Totals]:
    """Records (time, status, decision, latency in ms) counted into :data:`BUCKETS` buckets."""
    step = (until - since) / BUCKETS
    buckets = [Bucket(since + step * i) for i in range(BUCKETS)]
    everything: list[float] = []
    errors = blocked = 0
    for ts, status, decision, latency in rows:
        index = min(BUCKETS - 1, max(0, int((ts - since) / step)))
        bucket = buckets[index]
        bucket.requests += 1
        bucket.latencies.append(latency)
        everything.append(latency)
        if status >= 500:
            bucket.errors += 1
            errors += 1
        if decision == "blocked":
            bucket.blocked += 1
            blocked += 1
    everything.sort()
    total = len(everything)
    totals = Totals(total, errors / total if total else 0.0, blocked / total if total else 0.0,
                    percentile(everything, 50), percentile(everything, 95), percentile(everything, 99))
    return buckets, totals


@dataclass(frozen=True)
class Series:
    name: str
    #: A CSS class of the stylesheet (colours live there, not in the markup).
    css: str
    #: The SVG polyline's points.
    points: str


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    summary: str
    width: int
    height: int
    series: list[Series]
    #: (y position, label) of the horizontal grid lines.
    ticks: list[tuple[float, str]]
    #: (x position, label) under the axis.
    labels: list[tuple[float, str]]
    left: int = PAD_LEFT
    bottom: float = HEIGHT - PAD_BOTTOM


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude: float = 10.0 ** math.floor(math.log10(value))
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.0f}%" if value >= 1 or value == 0 else f"{value:.1f}%"
    if unit == "ms":
        return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def line_chart(chart_id: str, title: str, buckets: Sequence[Bucket],
               lines: Sequence[tuple[str, str, Sequence[float]]], unit: str = "") -> Chart:
    """A chart of ``lines`` (name, CSS class, one value a bucket) over the buckets' times."""
    top = _nice_max(max((v for _, _, values in lines for v in values), default=0.0))
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    count = max(1, len(buckets) - 1)

    def x(i: int) -> float:
        return round(PAD_LEFT + plot_w * i / count, 1)

    def y(v: float) -> float:
        return round(PAD_TOP + plot_h * (1 - v / top), 1)

    series = [Series(name, css, " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(values)))
              for name, css, values in lines]
    ticks = [(y(top * k / 4), _fmt(top * k / 4, unit)) for k in range(5)]
    labels = [(x(i), buckets[i].start.strftime("%H:%M")) for i in range(0, len(buckets), max(1, len(buckets) // 5))]
    peaks = ", ".join(f"{name} peaks at {_fmt(max(values, default=0.0), unit)}" for name, _, values in lines)
    return Chart(chart_id, title, f"{title}: {peaks}.", WIDTH, HEIGHT, series, ticks, labels)


def overview_charts(buckets: Sequence[Bucket]) -> list[Chart]:
    """Requests, error and blocked rates, latency percentiles: one chart each."""
    def rate(part: int, whole: int) -> float:
        return 100.0 * part / whole if whole else 0.0

    def pct(b: Bucket, q: float) -> float:
        return percentile(sorted(b.latencies), q) or 0.0

    per_bucket = [float(b.requests) for b in buckets]
    return [
        line_chart("requests", "Requests per interval", buckets, [("requests", "s-requests", per_bucket)]),
        line_chart("rates", "Error and blocked rates", buckets,
                   [("errors (5xx)", "s-errors", [rate(b.errors, b.requests) for b in buckets]),
                    ("blocked", "s-blocked", [rate(b.blocked, b.requests) for b in buckets])], "%"),
        line_chart("latency", "Latency percentiles", buckets,
                   [("p50", "s-p50", [pct(b, 50) for b in buckets]), ("p95", "s-p95", [pct(b, 95) for b in buckets]),
                    ("p99", "s-p99", [pct(b, 99) for b in buckets])], "ms"),
    ]
