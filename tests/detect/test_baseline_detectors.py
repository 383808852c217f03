"""The baseline detectors (a consumer's traffic, a route's 5xx share, each against its own
EWMA over past intervals) and failed logins counted per account, over a real state backend
(memory) with a real webhook server: each fires on its attack pattern and stays silent on
a benign pattern of similar volume. Records carry the times of the intervals they fall in."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest

from bastion.config.detectors import DetectorsSettings
from bastion.detect import Detectors
from bastion.detect.baseline import Baseline
from bastion.services import Services, WorkerIdentity
from bastion.state.memory import MemoryBackend
from bastion.types import ExchangeRecord
from tests.detect.webhook import WebhookServer

#: The start of an interval of 10 s (and of 60 s).
T0 = 1_765_000_200.0
ACCOUNT = "5e884898da28047151d0e56f8dc62927"  # an account as the login stage names it: a hash


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    with WebhookServer() as server:
        yield server


def record(ts: float, status: int = 200, *, client: str = "10.0.0.1", consumer: str | None = None,
           route: str = "api:/orders", facts: dict[str, Any] | None = None,
           blocked_by: str | None = None) -> ExchangeRecord:
    return ExchangeRecord(
        ts=ts, request_id="r", client=client, method="GET", path="/orders", route=route, service="api",
        status=status, bytes_in=0, bytes_out=10, seconds=0.001, consumer=consumer, blocked_by=blocked_by,
        facts=facts or {},
    )


def run(settings: dict[str, Any], records: list[ExchangeRecord], workers: int = 1) -> None:
    """Feed ``records``, in order, to sinks over one memory backend (record ``i`` to worker
    ``i % workers``), then close them. Only the detectors named in ``settings`` run."""
    names = ("brute_force", "scanner", "token_sharing", "injection", "enumeration", "account_brute_force",
             "traffic_spike", "error_spike")
    off = {name: {"enabled": False} for name in names if name not in settings}

    async def go() -> None:
        state = MemoryBackend()
        sinks = []
        for index in range(workers):
            services = Services(state, WorkerIdentity("test", index, workers, os.getpid()))
            settings_ = DetectorsSettings.model_validate({"enabled": True, **off, **settings})
            sinks.append((Detectors(settings_, services), services))
        for n, r in enumerate(records):
            sink = sinks[n % workers][0]
            sink(r)
            await sink.drain()
        for sink, services in sinks:
            await sink.close()
            await services.close()

    asyncio.run(go())


def test_the_baseline_is_the_first_interval_then_an_ewma_that_decays_over_quiet_intervals() -> None:
    """Corrected for its zero start, the baseline after one interval of 10 is 10; with alpha
    0.5 a second of 20 makes it (0.5*20 + 0.25*10) / 0.75; two quiet intervals then pull it
    towards zero as two zeros would; an interval folded twice (two workers) counts once."""
    one = Baseline().fold(5, 10.0, 0.5, gaps=True)
    assert one.expected(0.5) == 10.0
    two = one.fold(6, 20.0, 0.5, gaps=True)
    assert two.expected(0.5) == pytest.approx((0.5 * 20 + 0.25 * 10) / 0.75)
    assert two.fold(6, 99.0, 0.5, gaps=True) == two
    after_gap = two.fold(9, 0.0, 0.5, gaps=True)
    zeros = two.fold(7, 0.0, 0.5, gaps=True).fold(8, 0.0, 0.5, gaps=True).fold(9, 0.0, 0.5, gaps=True)
    assert after_gap.expected(0.5) == pytest.approx(zeros.expected(0.5))
    assert Baseline.decode(two.encode().encode()) == two
    assert Baseline.decode(b"not a baseline") == Baseline()


def steady(consumer: str, per_interval: int, intervals: int, start: int = 0) -> list[ExchangeRecord]:
    return [record(T0 + 10 * i + j * 0.01, consumer=consumer)
            for i in range(start, start + intervals) for j in range(per_interval)]


SPIKE = {"traffic_spike": {"interval": "10s", "factor": 3, "min_requests": 20}}


def test_a_consumer_far_above_its_own_baseline_raises_a_traffic_spike(hook: WebhookServer) -> None:
    """A consumer that calls a route 10 times an interval for five intervals, then 50 times in
    one, raises one traffic-spike alert at its 30th call (3 times its usual 10), naming it
    and the route."""
    traffic = steady("c-7", 10, 5) + steady("c-7", 50, 1, start=5)
    run({**SPIKE, "webhooks": [{"url": hook.url}]}, traffic)
    alerts = hook.wait(1)
    assert len(alerts) == 1
    doc = alerts[0].json()
    assert (doc["detector"], doc["subject"], doc["count"]) == (
        "traffic_spike", {"consumer": "c-7", "route": "api:/orders"}, 30
    )
    assert doc["summary"] == "consumer c-7 called route api:/orders 30 times within 10 s (usually 10.0)"


def test_three_workers_share_one_baseline(hook: WebhookServer) -> None:
    """The same traffic spread over three workers sharing a state backend raises the same one
    alert at the same count: each interval is folded once, by whichever worker saw its
    successor's first request, and the others read it."""
    traffic = steady("c-7", 10, 5) + steady("c-7", 50, 1, start=5)
    run({**SPIKE, "webhooks": [{"url": hook.url}]}, traffic, workers=3)
    alerts = hook.wait(1)
    assert [(a.json()["detector"], a.json()["count"]) for a in alerts] == [("traffic_spike", 30)]


def test_a_busy_consumer_at_its_usual_rate_is_no_spike(hook: WebhookServer) -> None:
    """A consumer that always calls 40 times an interval (above the floor of 20) raises
    nothing over seven intervals: it is judged against its own baseline, not a fixed limit,
    and not before it has one (three intervals)."""
    run({**SPIKE, "webhooks": [{"url": hook.url}]}, steady("c-8", 40, 7))
    assert hook.wait(1, timeout=1.0) == []


def route_traffic(intervals: int, per_interval: int, errors: int, start: int = 0) -> list[ExchangeRecord]:
    """``per_interval`` requests of one route an interval, ``errors`` of them answered 502."""
    return [record(T0 + 10 * i + j * 0.01, 502 if j % (per_interval // errors or 1) == 0 and
                   j // (per_interval // errors or 1) < errors else 200)
            for i in range(start, start + intervals) for j in range(per_interval)]


ERRORS = {"error_spike": {"interval": "10s", "ratio": 0.2, "factor": 3, "min_requests": 20}}


def test_a_route_failing_far_more_than_usual_raises_an_error_spike(hook: WebhookServer) -> None:
    """A route answering 5xx to 2 of 50 requests an interval for three intervals, then to 25
    of 50, raises one error-spike alert naming the route, once its share is past 20%."""
    traffic = route_traffic(3, 50, 2) + route_traffic(1, 50, 25, start=3)
    run({**ERRORS, "webhooks": [{"url": hook.url}]}, traffic)
    alerts = hook.wait(1)
    assert [a.json()["detector"] for a in alerts] == ["error_spike"]
    doc = alerts[0].json()
    assert doc["subject"] == {"route": "api:/orders"}
    assert doc["severity"] == "high" and doc["action"] == "alert"
    # Judged from the 20th request on: at the 21st, 11 were 5xx (every other one).
    assert doc["summary"] == "route api:/orders answered 11 of 21 requests with 5xx within 10 s (52%; usually 4%)"


def test_a_route_that_always_fails_as_much_is_no_spike(hook: WebhookServer) -> None:
    """A route answering 5xx to a quarter of its requests in every interval (past the 20%
    floor, but its usual share) raises an alert in its first interval at most, then none:
    only the first interval has no baseline to be judged against."""
    run({**ERRORS, "webhooks": [{"url": hook.url}]}, route_traffic(1, 40, 10))
    first = hook.wait(1)
    assert [a.json()["detector"] for a in first] == ["error_spike"]
    with WebhookServer() as later:
        run({**ERRORS, "webhooks": [{"url": later.url}]}, route_traffic(5, 40, 10))
        assert [a.json()["summary"] for a in later.wait(1, timeout=1.0)] == [first[0].json()["summary"]]


def failed_login(ts: float, client: str, account: str = ACCOUNT, *, locked: bool = False) -> ExchangeRecord:
    """A login the ``login`` stage saw fail (the upstream's 401), or refused as locked (429)."""
    if locked:
        return record(ts, 429, client=client, route="login", facts={"login": {"account": account}},
                      blocked_by="login")
    return record(ts, 401, client=client, route="login", facts={"login": {"account": account, "failed": True}})


def test_failed_logins_on_one_account_from_many_ips_raise_account_brute_force(hook: WebhookServer) -> None:
    """Twelve failed logins on one account from four client IPs (three of them refused as
    locked) raise one account-brute-force alert at the 10th, naming the account's hash."""
    traffic = [failed_login(T0 + n, f"198.51.100.{n % 4}", locked=n >= 9) for n in range(12)]
    run({"account_brute_force": {}, "webhooks": [{"url": hook.url}]}, traffic)
    alerts = hook.wait(1)
    assert len(alerts) == 1
    doc = alerts[0].json()
    assert (doc["detector"], doc["subject"], doc["count"]) == ("account_brute_force", {"account": ACCOUNT}, 10)
    assert doc["summary"] == "10 failed logins on one account from 4 client IPs within 600 s"


def test_one_user_mistyping_from_one_ip_is_no_account_attack(hook: WebhookServer) -> None:
    """Twelve failed logins on one account from one IP (a user, or one attacker the per-IP
    brute force counts) raise no account alert; successful logins of many accounts from
    many IPs raise none either."""
    mistakes = [failed_login(T0 + n, "192.0.2.10") for n in range(12)]
    logins = [record(T0 + n, 200, client=f"192.0.2.{n}", route="login",
                     facts={"login": {"account": f"{n:032x}"}}) for n in range(30)]
    run({"account_brute_force": {}, "webhooks": [{"url": hook.url}]}, mistakes + logins)
    assert hook.wait(1, timeout=1.0) == []


def test_failed_logins_the_login_stage_saw_count_for_brute_force_per_ip(hook: WebhookServer) -> None:
    """Failures the login stage saw count towards the per-IP brute force even when the login
    API answers them 403 (one of the login stage's failure statuses), not 401."""
    traffic = [record(T0 + n, 403, client="203.0.113.77", route="login",
                      facts={"login": {"account": f"{n:032x}", "failed": True}}) for n in range(5)]
    run({"brute_force": {"threshold": 5}, "webhooks": [{"url": hook.url}]}, traffic)
    alerts = hook.wait(1)
    assert [(a.json()["detector"], a.json()["subject"]) for a in alerts] == [("brute_force", {"ip": "203.0.113.77"})]
