"""The lockout's counting script, on both state backends (the Lua and the Python copy must
give the same answers), and the worker's table of known lockouts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bastion.stages.auth.config import LockoutConfig
from bastion.stages.auth.lockout import KnownLocks, Lockout
from bastion.state import MemoryBackend, StateBackend
from bastion.state.redis import RedisBackend
from tests.state.redisproc import RedisProcess, require_redis


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisProcess]:
    require_redis()
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.stop()


def backend(kind: str, clock: Clock, request: pytest.FixtureRequest) -> StateBackend:
    if kind == "memory":
        return MemoryBackend(clock)
    server: RedisProcess = request.getfixturevalue("redis_server")
    server.flush()
    return RedisBackend(server.url, timeout=2.0, key_prefix="lockout-test:")


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_counting_locks_out_at_the_threshold_with_a_doubling_back_off(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """Per address: failures below the threshold answer 0; the one that reaches it locks out
    for `backoff` seconds, and a failure during a lockout answers what is left of it. The
    next lockout lasts twice as long, capped at `max_backoff`. A credential id is counted on
    its own threshold, beside the address. Both backends answer alike."""
    clock = Clock()
    state = backend(kind, clock, request)
    config = LockoutConfig(enabled=True, max_failures_per_ip=2, max_failures_per_credential=3, backoff=10,
                           max_backoff=25)

    async def scenario() -> list[float]:
        lockout = Lockout(config)
        lockout.start(state, KnownLocks(), clock)
        answers = [await lockout.count("192.0.2.1", "") for _ in range(2)]  # 0, then locked 10 s
        answers.append(await lockout.count("192.0.2.1", ""))  # during it: what is left (<= 10)
        for extra in (0, 0):
            # Redis keeps its own time: let the lockout expire by deleting it (as its TTL would).
            await state.delete("auth:lock:ip:192.0.2.1")
            clock.now += 11 + extra
            answers += [await lockout.count("192.0.2.1", "") for _ in range(2)]  # 0, then 20; then 0, 25
        answers += [await lockout.count(f"198.51.100.{i}", "bst_alice001") for i in range(3)]  # 0, 0, 10
        await state.close()
        return answers

    answers = asyncio.run(scenario())
    assert answers[:2] == [0.0, 10.0]
    assert 0 < answers[2] <= 10
    assert answers[3:7] == [0.0, 20.0, 0.0, 25.0]
    assert answers[7:] == [0.0, 0.0, 10.0]


def test_known_locks_expire_and_stay_bounded() -> None:
    """The worker's table forgets a lockout once it is over, and stops taking new ones when
    full of live ones (the backend still has them: the next failure relearns them)."""
    known = KnownLocks(limit=2)
    known.add("ip:a", 1010.0, 1000.0)
    assert known.remaining("ip:a", 1005.0) == 5.0
    assert known.remaining("ip:a", 1010.0) == 0.0 and "ip:a" not in known.until
    known.add("ip:b", 2000.0, 1000.0)
    known.add("ip:c", 2000.0, 1000.0)
    known.add("ip:d", 2000.0, 1000.0)
    assert set(known.until) == {"ip:b", "ip:c"}
