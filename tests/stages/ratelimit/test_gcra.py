"""The GCRA script on both state backends: its arithmetic, that refusals write nothing, that
several limits are all-or-nothing, and that the Lua and the Python copy answer alike.

Time is given to the script explicitly (microseconds), so nothing here depends on how fast
the test runs; Redis is a real redis-server.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import pytest
import uvloop

from bastion.stages.ratelimit.gcra import GCRA, LIMITS, interval_us, window_us
from bastion.state import MemoryBackend, ScriptResult, StateBackend
from bastion.state.redis import RedisBackend
from tests.state.redisproc import RedisProcess

T = TypeVar("T")
SECOND = 1_000_000
START = 1_000 * SECOND


def backend(kind: str, request: pytest.FixtureRequest) -> StateBackend:
    if kind == "memory":
        # Expiry on the same (frozen) clock the script is given: START, in seconds.
        return MemoryBackend(lambda: START / SECOND)
    server: RedisProcess = request.getfixturevalue("redis_server")
    server.flush()
    return RedisBackend(server.url, timeout=2.0, key_prefix="gcra-test:")


def limit_args(*limits: tuple[int, float]) -> list[int]:
    """T and tolerance of each (limit, window in seconds), as the stage passes them."""
    out: list[int] = []
    for limit, window in limits:
        t = interval_us(limit, window)
        out += [t, (limit - 1) * t]
    return out


def sliding_args(limit: int, window: float) -> list[int]:
    """A sliding window's two numbers, as the stage passes them: -window and the limit."""
    return [-window_us(window), limit]


def closing(scenario: Callable[[], Awaitable[T]], *states: StateBackend) -> T:
    """Run ``scenario``, then close ``states`` whatever happened (an open Redis connection
    would keep the event loop from ending after a failed assertion)."""

    async def main() -> T:
        try:
            return await scenario()
        finally:
            for state in states:
                await state.close()

    return uvloop.run(main())


async def hit(state: StateBackend, keys: Sequence[str], now: int, args: list[int]) -> ScriptResult:
    return await state.run(GCRA, keys, [now, *args])


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_burst_of_the_limit_then_one_per_interval(kind: str, request: pytest.FixtureRequest) -> None:
    """5 per 10 s: five requests at once are admitted (remaining 4..0), the sixth is refused
    and told to wait exactly one interval (2 s); then one more is admitted per 2 s."""
    state = backend(kind, request)
    args = limit_args((5, 10))

    async def scenario() -> list[ScriptResult]:
        answers = [await hit(state, ["k"], START, args) for _ in range(6)]
        answers.append(await hit(state, ["k"], START + 2 * SECOND - 1, args))
        answers.append(await hit(state, ["k"], START + 2 * SECOND, args))
        answers.append(await hit(state, ["k"], START + 2 * SECOND, args))
        return answers

    answers = closing(scenario, state)
    # [admitted, remaining, microseconds: until whole when admitted, until the next when refused]
    assert answers[:5] == [[1, 4, 2 * SECOND], [1, 3, 4 * SECOND], [1, 2, 6 * SECOND], [1, 1, 8 * SECOND],
                           [1, 0, 10 * SECOND]]
    assert answers[5] == [0, 0, 2 * SECOND]
    assert answers[6] == [0, 0, 1]
    assert answers[7] == [1, 0, 10 * SECOND]
    assert answers[8] == [0, 0, 2 * SECOND]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_refusals_consume_nothing(kind: str, request: pytest.FixtureRequest) -> None:
    """A client that keeps hammering while limited (200 refused tries) gets its next request
    in exactly when the interval has passed, as if it had waited quietly."""
    state = backend(kind, request)
    args = limit_args((2, 10))

    async def scenario() -> list[int]:
        admitted = []
        for step in range(0, 5 * SECOND + 1, 25_000):  # every 25 ms for 5 s
            answer = await hit(state, ["k"], START + step, args)
            assert isinstance(answer, list)
            if answer[0] == 1:
                admitted.append(step)
        return admitted

    # The burst of 2 at once, then one per 5 s: at 5 s, not later (refusals did not push it).
    assert closing(scenario, state) == [0, 25_000, 5 * SECOND]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_several_limits_are_all_or_nothing(kind: str, request: pytest.FixtureRequest) -> None:
    """A request refused by one limit counts against none: with 5/10 s on key a and 2/10 s
    on key b, the third request (refused by b) leaves a at 3 remaining, not 2."""
    state = backend(kind, request)
    args = limit_args((5, 10), (2, 10))

    async def scenario() -> list[ScriptResult]:
        answers = [await hit(state, ["a", "b"], START, args) for _ in range(3)]
        answers.append(await hit(state, ["a", "other-b"], START, args))
        return answers

    answers = closing(scenario, state)
    assert answers[0] == [1, 4, 2 * SECOND, 1, 5 * SECOND]
    assert answers[1] == [1, 3, 4 * SECOND, 0, 10 * SECOND]
    # Refused by b (wait 5 s); a reports 3 left (it was not counted) and 4 s until whole.
    assert answers[2] == [0, 3, 4 * SECOND, 0, 5 * SECOND]
    assert answers[3] == [1, 2, 6 * SECOND, 1, 5 * SECOND]


def test_the_lua_and_the_python_copy_answer_alike(request: pytest.FixtureRequest) -> None:
    """A random run of requests over overlapping keys, limits and times: both backends give
    the same answer to every call."""
    memory, redis = backend("memory", request), backend("redis", request)
    # Long windows: Redis expires keys on its real clock, which must not overtake the
    # script's (each key lives at least one interval, 3 s here, longer than the test).
    args = limit_args((3, 10), (7, 25), (1, 3))
    rng = random.Random(15)

    async def scenario() -> None:
        now = START
        for _ in range(400):
            now += rng.choice((0, 0, 1, 9_999, 500_000, 3_333_333, 10 * SECOND))
            keys = [rng.choice("abc"), rng.choice("de"), rng.choice("fg")]
            assert await hit(memory, keys, now, args) == await hit(redis, keys, now, args)

    closing(scenario, memory, redis)


def test_the_interval_rounds_up_so_the_limit_is_never_exceeded() -> None:
    """3 per second is 333 334 µs apart (never 333 333: four would then fit in a second)."""
    assert interval_us(3, 1) == 333_334
    assert interval_us(20, 10) == 500_000
    assert interval_us(10**9, 0.001) == 1


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_sliding_window_never_holds_more_than_the_limit(kind: str, request: pytest.FixtureRequest) -> None:
    """3 per 10 s as a sliding window, a request every 0.5 s for 30 s: admitted at 0, 0.5
    and 1 s, then refused until the first of those leaves the window (10 s after it, and
    told so), and so on: never more than 3 in any interval of 10 s, 9 in all. GCRA, with the
    same numbers, admits 5 in the first 10 s (its burst of 3, then one per 3.33 s)."""
    state = backend(kind, request)
    sliding, gcra = sliding_args(3, 10), limit_args((3, 10))

    async def scenario() -> tuple[list[int], list[int], list[ScriptResult]]:
        admitted: dict[str, list[int]] = {"sliding": [], "gcra": []}
        answers: list[ScriptResult] = []
        for step in range(0, 30 * SECOND, SECOND // 2):
            answer = await state.run(LIMITS, ["s"], [START + step, *sliding])
            answers.append(answer)
            assert isinstance(answer, list)
            if answer[0] == 1:
                admitted["sliding"].append(step)
            if (await hit(state, ["g"], START + step, gcra))[0] == 1:  # type: ignore[index]
                admitted["gcra"].append(step)
        return admitted["sliding"], admitted["gcra"], answers

    admitted, gcra_admitted, answers = closing(scenario, state)
    assert admitted == [s * SECOND // 2 for s in (0, 1, 2, 20, 21, 22, 40, 41, 42)]
    assert max(sum(1 for a in admitted if start <= a < start + 10 * SECOND)
               for start in range(0, 30 * SECOND, SECOND // 2)) == 3
    assert answers[:4] == [[1, 2, 10 * SECOND], [1, 1, 10 * SECOND], [1, 0, 10 * SECOND],
                           [0, 0, 10 * SECOND - 3 * SECOND // 2]]  # at 1.5 s: wait until 10 s
    assert sum(1 for a in gcra_admitted if a < 10 * SECOND) == 5  # 0, 0.5, 1, then 3.5 and 7 (3.33 s apart)


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_sliding_window_and_gcra_in_one_call_are_all_or_nothing(kind: str,
                                                                 request: pytest.FixtureRequest) -> None:
    """A GCRA limit (5 per 10 s) and a sliding window (2 per 10 s) checked together: the
    third request, refused by the window, counts against neither (the GCRA limit still has 3
    left, the window's log still 2 entries); each answer gives both limits' numbers."""
    state = backend(kind, request)
    args = [*limit_args((5, 10)), *sliding_args(2, 10)]

    async def scenario() -> list[ScriptResult]:
        answers = [await state.run(LIMITS, ["a", "b"], [START + n, *args]) for n in range(3)]
        answers.append(await state.run(LIMITS, ["a", "other-b"], [START + 3, *args]))
        return answers

    answers = closing(scenario, state)
    assert answers[0] == [1, 4, 2 * SECOND, 1, 10 * SECOND]
    assert answers[1] == [1, 3, 4 * SECOND - 1, 0, 10 * SECOND]
    # Refused by b: its first entry (at START) leaves at START + 10 s, 2 µs from now.
    assert answers[2] == [0, 3, 4 * SECOND - 2, 0, 10 * SECOND - 2]
    assert answers[3] == [1, 2, 6 * SECOND - 3, 1, 10 * SECOND]


def test_the_lua_and_the_python_copy_answer_alike_with_sliding_windows(request: pytest.FixtureRequest) -> None:
    """As above, with sliding windows among the limits: both backends give the same answer
    to every call."""
    memory, redis = backend("memory", request), backend("redis", request)
    # Windows longer than the test on Redis's real clock (its expiry must not overtake the script's time).
    args = [*sliding_args(3, 30), *limit_args((7, 25)), *sliding_args(1, 40)]
    rng = random.Random(19)

    async def scenario() -> None:
        now = START
        for _ in range(400):
            now += rng.choice((0, 0, 1, 9_999, 500_000, 3_333_333, 10 * SECOND))
            keys = [rng.choice("abc"), rng.choice("de"), rng.choice("fg")]
            assert await memory.run(LIMITS, keys, [now, *args]) == await redis.run(LIMITS, keys, [now, *args])

    closing(scenario, memory, redis)
