"""Target selection in the upstream pool, without sockets: balancing, breakers, health."""

from __future__ import annotations

import time

import pytest

from bastion.config.model import Upstream
from bastion.proxy.upstream import UpstreamPool
from bastion.proxy.upstream_errors import UpstreamUnavailable


def pool(**settings: object) -> UpstreamPool:
    config = Upstream.model_validate(
        {"targets": ["http://127.0.0.1:1", {"url": "http://127.0.0.1:2", "weight": 2}], **settings}
    )
    return UpstreamPool("svc", config, None)


def test_weighted_round_robin() -> None:
    """Round robin visits each target as often as its weight says."""
    p = pool()
    picks = [p.choose().port for _ in range(6)]
    assert picks.count(1) == 2 and picks.count(2) == 4


def test_least_connections_prefers_the_idlest_per_weight() -> None:
    """least_connections picks the target with the fewest active exchanges relative to its weight."""
    p = pool(balance="least_connections")
    first, second = p.targets
    first.active, second.active = 1, 1
    assert p.choose() is second  # 1/2 < 1/1
    second.active = 3
    assert p.choose() is first  # 1/1 < 3/2


def test_open_breaker_skips_a_target_then_allows_one_trial() -> None:
    """After `failures` consecutive failures a target rests; after the cooldown, one trial request."""
    p = pool(circuit_breaker={"failures": 2, "cooldown": 0.2})
    first, second = p.targets
    now = time.monotonic()
    first.record_failure(now)
    assert first.available(now)
    first.record_failure(now)
    assert not first.available(now)
    assert all(p.choose() is second for _ in range(5))
    time.sleep(0.25)
    trial = [p.choose() for _ in range(3)]
    assert trial.count(first) == 1  # half-open: a single trial
    first.record_success()
    assert first.available(now=time.monotonic())


def test_no_available_target_is_503() -> None:
    """When every target is unhealthy the pool refuses with UpstreamUnavailable (503)."""
    p = pool()
    for t in p.targets:
        t.healthy = False
    with pytest.raises(UpstreamUnavailable) as info:
        p.choose()
    assert info.value.status == 503
