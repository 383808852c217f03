"""``failure_mode: open`` on Redis: a conservative local limit while Redis is down, through a
real gateway and a real redis-server that the test kills and starts again.

The worker's clock is the test's (it times the local limit and the retries); Redis times the
shared limit with its own clock. Nothing here asserts how long anything took.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from bastion.proxy.metrics import METRICS
from bastion.proxy.worker import Worker
from bastion.stages.ratelimit.fallback import RETRY_SECONDS, local_share
from tests.proxy.scripted import ScriptedUpstream
from tests.stages.ratelimit.test_gateway import (
    ManualClock,
    identity,
    redis_backends,
    run,
    serving,
    signed_in,
    write_config,
)
from tests.state.redisproc import RedisProcess


def switches() -> dict[tuple[str, ...], float]:
    return dict(METRICS.counters["bastion_ratelimit_fallback"])


def test_redis_down_limits_each_worker_to_its_share_then_redis_again(
        tmp_path: Path, upstream: ScriptedUpstream, own_redis: RedisProcess,
        caplog: pytest.LogCaptureFixture) -> None:
    """8 per hour by IP, failure_mode open, 2 instances declared, a worker of 2: with Redis
    killed, this worker admits its share (8 // 4 = 2) and refuses the third with 429 -- not
    everything, not 503. Redis started again (empty), the worker goes back to it at its next
    retry: 200 with the shared limit's count (7 left). One warning and one count per switch."""
    ratelimit = {"limit": 8, "window": "1h", "by": "ip", "name": "per-ip", "failure_mode": "open", "instances": 2}
    path, port = write_config(tmp_path, upstream, ratelimit, redis_backends(own_redis.url))
    clock = ManualClock()
    worker = Worker(str(path), identity=identity(0, 2), load=signed_in, clock=clock)
    before = switches()
    url = f"http://127.0.0.1:{port}/fallback"

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        answers = [await client.get(url)]
        own_redis.kill()
        answers += [await client.get(url) for _ in range(3)]
        own_redis.start()
        answers.append(await client.get(url))  # the retry is not due: still local
        clock.now += RETRY_SECONDS
        answers += [await client.get(url) for _ in range(2)]
        return answers

    with caplog.at_level(logging.WARNING, logger="bastion.ratelimit"):
        answers = run(lambda: serving([worker], scenario))
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429, 200, 200]
    assert answers[0].headers["ratelimit"] == '"per-ip";r=7;t=450'
    assert answers[3].headers["content-type"] == "application/problem+json"
    assert answers[5].headers["ratelimit"] == '"per-ip";r=7;t=450'  # Redis's count, afresh
    assert answers[6].headers["ratelimit"] == '"per-ip";r=6;t=900'
    after = switches()
    assert after.get(("local",), 0) - before.get(("local",), 0) == 1
    assert after.get(("shared",), 0) - before.get(("shared",), 0) == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "bastion.ratelimit"]
    assert len(messages) == 2, messages
    assert "limiting locally (failure_mode: open)" in messages[0] and "unavailable" in messages[0]
    assert "answers again" in messages[1]
    assert all("Traceback" not in m for m in messages)


def test_failure_mode_closed_never_falls_back(tmp_path: Path, upstream: ScriptedUpstream,
                                              own_redis: RedisProcess) -> None:
    """The default stays fail closed: Redis killed, every request is 503, none is admitted
    by a local limit, and no switch is counted."""
    path, port = write_config(tmp_path, upstream, {"limit": 8, "window": "1h", "by": "ip"},
                              redis_backends(own_redis.url))
    worker = Worker(str(path), identity=identity(), load=signed_in, clock=ManualClock())
    before = switches()

    async def scenario(client: httpx.AsyncClient) -> list[int]:
        own_redis.kill()
        return [(await client.get(f"http://127.0.0.1:{port}/closed")).status_code for _ in range(3)]

    assert run(lambda: serving([worker], scenario)) == [503, 503, 503]
    assert switches() == before


@pytest.mark.parametrize(("limit", "workers", "instances", "share"),
                         [(8, 2, 2, 2), (100, 3, 1, 33), (10, 4, 3, 1), (1, 8, 1, 1)])
def test_a_workers_share_never_exceeds_an_even_split(limit: int, workers: int, instances: int, share: int) -> None:
    """The share is the limit split evenly, rounded down, and at least 1."""
    assert local_share(limit, workers, instances) == share
