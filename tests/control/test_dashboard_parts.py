"""The dashboard's pure parts: the sign-in rate limiter's sliding minute and its bound on
remembered addresses, and the overview's buckets, rates and percentiles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bastion.control.dashboard import charts, limiter
from bastion.control.dashboard.limiter import LoginLimiter


def test_limiter_allows_per_minute_per_address() -> None:
    """Three attempts a minute: the fourth is refused, another address is not, and the
    first attempt's slot frees a minute after it."""
    limit = LoginLimiter(3)
    assert [limit.allow("10.0.0.1", t) for t in (0.0, 1.0, 2.0, 3.0)] == [True, True, True, False]
    assert limit.allow("10.0.0.2", 3.0)
    assert not limit.allow("10.0.0.1", 59.9)
    assert limit.allow("10.0.0.1", 60.0)


def test_limiter_forgets_the_oldest_address_beyond_its_bound(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A flood of addresses cannot grow the table: past MAX_CLIENTS the least recent goes."""
    monkeypatch.setattr(limiter, "MAX_CLIENTS", 2)
    limit = LoginLimiter(1)
    assert limit.allow("a", 0.0) and limit.allow("b", 0.0) and not limit.allow("a", 1.0)
    assert limit.allow("c", 1.0)  # "b" was the least recent: forgotten
    assert limit.allow("b", 1.0)


def test_percentile_is_nearest_rank() -> None:
    """p50/p95/p99 of 1..100 are 50, 95, 99; of one value, that value; of none, None."""
    values = [float(v) for v in range(1, 101)]
    assert [charts.percentile(values, q) for q in (50, 95, 99)] == [50.0, 95.0, 99.0]
    assert charts.percentile([7.0], 99) == 7.0
    assert charts.percentile([], 50) is None


def test_bucketize_counts_requests_errors_and_blocks() -> None:
    """Records land in the bucket of their time (the window's end in the last one); 5xx are
    errors, decision blocked are blocks, and the totals' rates and percentiles cover all."""
    since = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    until = since + timedelta(minutes=30)  # 30 buckets of a minute
    rows = [(since + timedelta(seconds=10), 200, "allowed", 5.0),
            (since + timedelta(seconds=20), 502, "allowed", 50.0),
            (since + timedelta(minutes=5, seconds=1), 403, "blocked", 1.0),
            (until, 200, "allowed", 9.0)]
    buckets, totals = charts.bucketize(rows, since, until)
    assert len(buckets) == charts.BUCKETS
    assert (buckets[0].requests, buckets[0].errors, buckets[0].blocked) == (2, 1, 0)
    assert (buckets[5].requests, buckets[5].blocked) == (1, 1)
    assert buckets[-1].requests == 1
    assert totals.requests == 4 and totals.error_rate == 0.25 and totals.blocked_rate == 0.25
    assert (totals.p50, totals.p99) == (5.0, 50.0)


def test_charts_scale_to_a_round_maximum() -> None:
    """Each chart has one polyline a series with a point a bucket, the top grid line is a
    round number at or above the peak, and the summary names each peak (for screen readers)."""
    since = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    rows = [(since + timedelta(seconds=s), 200, "allowed", 3.0) for s in range(7)]
    buckets, _ = charts.bucketize(rows, since, since + timedelta(minutes=30))
    requests, rates, latency = charts.overview_charts(buckets)
    assert [len(s.points.split()) for s in requests.series] == [charts.BUCKETS]
    assert requests.ticks[0][1] == "0" and requests.ticks[-1][1] == "10"
    assert "requests peaks at 7" in requests.summary
    assert [s.name for s in latency.series] == ["p50", "p95", "p99"]
    assert [s.name for s in rates.series] == ["errors (5xx)", "blocked"]
