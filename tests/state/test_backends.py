"""The state backends against one set of interface tests: memory, and redis on a real server.

Every test here runs on both backends. "Two workers" are two backend objects (two
connection pools on Redis); on memory they are the same object, since the memory backend
is exact only within one process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from bastion.errors import DependencyUnavailable
from bastion.state import MemoryBackend, Script, ScriptArg, ScriptResult, ScriptStore, StateBackend
from bastion.state.redis import RedisBackend
from bastion.testing import free_port

T = TypeVar("T")


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Backends:
    """Makes the backend under test; ``expire`` lets ``seconds`` pass for it."""

    def __init__(self, kind: str, redis_url: str | None) -> None:
        self.kind = kind
        self.redis_url = redis_url
        self.clock = FakeClock()
        self._memory: MemoryBackend | None = None

    def make(self, prefix: str = "test:") -> StateBackend:
        if self.kind == "memory":
            if self._memory is None:
                self._memory = MemoryBackend(self.clock.monotonic)
            return self._memory
        assert self.redis_url is not None
        return RedisBackend(self.redis_url, timeout=2.0, key_prefix=prefix)

    async def wait_gone(self, backend: StateBackend, key: str, ttl: float) -> None:
        """Let ``key`` (set with ``ttl``) expire: the fake clock moves, or Redis expires it."""
        if self.kind == "memory":
            self.clock.now += ttl + 0.001
            return
        deadline = time.monotonic() + 10
        while await backend.get(key) is not None:
            assert time.monotonic() < deadline, f"{key} never expired"
            await asyncio.sleep(0.02)


@pytest.fixture(params=["memory", "redis"])
def backends(request: pytest.FixtureRequest) -> Backends:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return Backends(request.param, url)


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await scenario()

    return asyncio.run(main())


async def closing(*backends: StateBackend) -> None:
    for b in set(backends):
        await b.close()


def test_incr_returns_each_new_value_once_across_workers(backends: Backends) -> None:
    """Counters are atomic: 200 concurrent increments from two workers return 1..200, each
    exactly once, and the counter ends at 200; ``amount`` adds more than one."""

    async def scenario() -> None:
        a, b = backends.make(), backends.make()
        try:
            values = await asyncio.gather(*(w.incr("hits", ttl=60) for _ in range(100) for w in (a, b)))
            assert sorted(values) == list(range(1, 201))
            assert await a.incr("hits", 5) == 205
            assert await b.get("hits") == b"205"
        finally:
            await closing(a, b)

    run(scenario)


def test_incr_expiry_is_a_fixed_window(backends: Backends) -> None:
    """The TTL is set by the increment that creates the counter, not moved by later ones;
    once it has passed the counter starts again from zero."""

    async def scenario() -> None:
        s = backends.make()
        try:
            assert await s.incr("window", ttl=60) == 1
            assert await s.incr("window", ttl=0.5) == 2
            left = await s.run(TTL_MS, ["window"])
            assert isinstance(left, int) and left > 1000  # still the first TTL, not 0.5 s
            assert await s.incr("short", ttl=0.05) == 1
            await backends.wait_gone(s, "short", 0.05)
            assert await s.incr("short", ttl=0.05) == 1
        finally:
            await closing(s)

    run(scenario)


def test_get_set_delete_with_ttl(backends: Backends) -> None:
    """set stores bytes (text and numbers as their UTF-8 form), overwrites, expires after its
    TTL; delete tells whether the key existed; a missing key reads as None."""

    async def scenario() -> None:
        s = backends.make()
        try:
            assert await s.get("missing") is None
            await s.set("k", "välue")
            assert await s.get("k") == "välue".encode()
            await s.set("k", 42)
            assert await s.get("k") == b"42"
            assert await s.delete("k") is True
            assert await s.delete("k") is False
            assert await s.get("k") is None
            await s.set("temp", b"\x00\xff", ttl=0.05)
            assert await s.get("temp") == b"\x00\xff"
            await backends.wait_gone(s, "temp", 0.05)
            assert await s.get("temp") is None
        finally:
            await closing(s)

    run(scenario)


def test_ttl_must_be_positive(backends: Backends) -> None:
    """A zero or negative TTL is a caller's bug, refused before anything is stored."""

    async def scenario() -> None:
        s = backends.make()
        try:
            with pytest.raises(ValueError, match="ttl must be a positive"):
                await s.incr("k", ttl=0)
            with pytest.raises(ValueError, match="ttl must be a positive"):
                await s.set("k", b"v", ttl=-1)
            assert await s.get("k") is None
        finally:
            await closing(s)

    run(scenario)


def _ttl_ms(store: ScriptStore, keys: Sequence[str], args: Sequence[ScriptArg]) -> ScriptResult:
    left = store.ttl(keys[0])
    return -1 if left is None else int(left * 1000)


TTL_MS = Script("ttl-ms", "return redis.call('PTTL', KEYS[1])", _ttl_ms)


def _move(store: ScriptStore, keys: Sequence[str], args: Sequence[ScriptArg]) -> ScriptResult:
    amount = int(args[0])
    have = int(store.get(keys[0]) or 0)
    if have < amount:
        return [0, have]
    store.set(keys[0], have - amount)
    return [1, store.incr(keys[1], amount)]


#: Move ``amount`` from KEYS[1] to KEYS[2] if KEYS[1] holds that much: [moved?, new value].
MOVE = Script(
    "move",
    """
local amount = tonumber(ARGV[1])
local have = tonumber(redis.call('GET', KEYS[1]) or '0')
if have < amount then return {0, have} end
redis.call('SET', KEYS[1], have - amount)
return {1, redis.call('INCRBY', KEYS[2], amount)}
""",
    _move,
)


def test_scripts_are_atomic_over_several_keys(backends: Backends) -> None:
    """A script reads and writes two keys as one step: 50 concurrent moves of 1 from a
    balance of 30, from two workers, succeed exactly 30 times and conserve the total."""

    async def scenario() -> None:
        a, b = backends.make(), backends.make()
        try:
            await a.set("from", 30)
            results = await asyncio.gather(*(w.run(MOVE, ["from", "to"], [1]) for _ in range(25) for w in (a, b)))
            moved = [r for r in results if isinstance(r, list) and r[0] == 1]
            assert len(moved) == 30
            assert sorted(r[1] for r in moved) == list(range(1, 31))  # type: ignore[type-var]
            assert await a.get("from") == b"0"
            assert await b.get("to") == b"30"
        finally:
            await closing(a, b)

    run(scenario)


def _args(store: ScriptStore, keys: Sequence[str], args: Sequence[ScriptArg]) -> ScriptResult:
    return [a if isinstance(a, bytes) else str(a).encode() for a in args]


#: Its arguments as Redis gives them to a script (bulk strings).
ARGS = Script("args", "return ARGV", _args)


def test_a_prepared_script_runs_as_run_does(backends: Backends) -> None:
    """A script prepared with its arguments after the first fixed (what a rate limit sends on
    every request) gets the same arguments as ``run`` gives it, whatever the first is, and
    stays atomic: 50 concurrent prepared moves of 1 from a balance of 30, from two workers,
    succeed exactly 30 times."""

    async def scenario() -> None:
        a, b = backends.make(), backends.make()
        try:
            args = a.prepare(ARGS, 0, [7, "x", b"y"])
            assert await a.run_prepared(args, [], "") == [b"", b"7", b"x", b"y"]
            assert await a.run_prepared(args, [], 123456789012) == await a.run(ARGS, [], [123456789012, 7, "x", b"y"])
            await a.set("from", 30)
            moves = [w.prepare(MOVE, 2, ()) for w in (a, b)]
            results = await asyncio.gather(*(w.run_prepared(m, ["from", "to"], 1) for _ in range(25)
                                             for w, m in zip((a, b), moves, strict=True)))
            moved = [r for r in results if isinstance(r, list) and r[0] == 1]
            assert len(moved) == 30
            assert await b.get("to") == b"30"
        finally:
            await closing(a, b)

    run(scenario)


def test_redis_prepared_scripts_of_one_turn_are_one_pipeline(redis_url: str) -> None:
    """Prepared script calls issued in one turn of the event loop go as one pipeline with
    the other commands, each answered in its place; a prepared call given another number of
    keys than it was prepared for is refused before anything is sent, and the connection
    goes on answering."""

    async def scenario() -> None:
        s = RedisBackend(redis_url, timeout=2.0)
        try:
            prepared = s.prepare(MOVE, 2, ())
            await s.set("from", 10)
            await s.run_prepared(prepared, ["from", "to"], 1)  # Redis knows the script from here on
            before = s.round_trips

            async def move() -> ScriptResult:  # called from a task, as the stage's hook is
                return await s.run_prepared(prepared, ["from", "to"], 1)

            answers = await asyncio.gather(*(move() for _ in range(12)), s.get("from"))
            assert s.round_trips == before + 1
            assert answers[:12] == [[1, n] for n in range(2, 11)] + [[0, 0]] * 3
            assert answers[12] == b"0"
            with pytest.raises(ValueError, match="prepared for 2 keys, given 1"):
                s.run_prepared(prepared, ["from"], 1)
            assert s.round_trips == before + 1
            assert await s.get("to") == b"10"
        finally:
            await s.close()

    run(scenario)


def test_publish_reaches_every_subscriber(backends: Backends) -> None:
    """A message published by one worker reaches the subscribers of its channel (another
    worker's included), in order, and not those of another channel; a closed subscription
    ends its iterator."""

    async def scenario() -> None:
        a, b = backends.make(), backends.make()
        try:
            sub_a = await a.subscribe("revoked")
            sub_b = await b.subscribe("revoked")
            other = await a.subscribe("blocked")
            await b.publish("revoked", b"token-1")
            await a.publish("revoked", b"token-2")

            async def first_two(sub: object) -> list[bytes]:
                got: list[bytes] = []
                async for message in sub:  # type: ignore[attr-defined]
                    got.append(message)
                    if len(got) == 2:
                        break
                return got

            assert await asyncio.wait_for(first_two(sub_a), 10) == [b"token-1", b"token-2"]
            assert await asyncio.wait_for(first_two(sub_b), 10) == [b"token-1", b"token-2"]
            await a.publish("blocked", b"10.0.0.1")
            got_other = await asyncio.wait_for(first_two_or_close(other), 10)
            assert got_other == [b"10.0.0.1"]
            await sub_a.close()
            await sub_b.close()
        finally:
            await closing(a, b)

    async def first_two_or_close(sub: object) -> list[bytes]:
        got: list[bytes] = []
        async for message in sub:  # type: ignore[attr-defined]
            got.append(message)
            await sub.close()  # type: ignore[attr-defined]
        return got

    run(scenario)


def test_memory_backend_stays_bounded_under_one_off_keys() -> None:
    """Expired keys nobody reads again (a counter per client address) are swept: 100 000
    one-off counters with a 1 s TTL, created over 100 s, never leave more than a few
    thousand keys in the table."""
    clock = FakeClock()
    state = MemoryBackend(clock.monotonic)

    async def scenario() -> int:
        most = 0
        for i in range(100_000):
            await state.incr(f"ip:{i}", ttl=1)
            clock.now += 0.001
            most = max(most, len(state))
        return most

    assert run(scenario) < 5000


def test_redis_keys_are_prefixed(redis_url: str) -> None:
    """Two gateways with different key prefixes on one Redis database share nothing."""

    async def scenario() -> None:
        a = RedisBackend(redis_url, timeout=2.0, key_prefix="one:")
        b = RedisBackend(redis_url, timeout=2.0, key_prefix="two:")
        try:
            assert await a.incr("n") == 1
            assert await b.incr("n") == 1
            assert await b.get("n") == b"1"
        finally:
            await closing(a, b)

    run(scenario)


def test_redis_unreachable_is_dependency_unavailable_without_the_password() -> None:
    """Every operation on a Redis that does not answer raises DependencyUnavailable (what
    the chain turns into 503 under failure_mode closed); the message names the server but
    never its password."""
    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"

    async def scenario() -> list[str]:
        s = RedisBackend(url, timeout=0.5)
        messages: list[str] = []
        try:
            for op in (s.incr("k", ttl=1), s.get("k"), s.set("k", 1), s.delete("k"), s.run(MOVE, ["a", "b"], [1]),
                       s.publish("c", b"m"), s.ping()):
                with pytest.raises(DependencyUnavailable) as caught:
                    await op
                messages.append(str(caught.value))
        finally:
            await s.close()
        return messages

    for message in run(scenario):
        assert "s3cret-pw" not in message
        assert "redis://:***@127.0.0.1" in message


def test_redis_sends_one_turns_commands_as_one_pipeline(redis_url: str) -> None:
    """Commands issued in the same turn of the event loop (as concurrent requests do) reach
    Redis as one pipeline, one round trip, each with its own answer; a lone command later
    is one more."""

    async def scenario() -> None:
        s = RedisBackend(redis_url, timeout=2.0)
        try:
            await s.set("seed", 1)
            await s.incr("warm")  # Redis knows the counter's script from here on (no NOSCRIPT)
            before = s.round_trips
            results = await asyncio.gather(*(s.incr(f"k{i % 4}", ttl=60) for i in range(32)), s.get("seed"))
            assert s.round_trips == before + 1
            assert sorted(results[:32]) == sorted([1, 2, 3, 4, 5, 6, 7, 8] * 4)  # type: ignore[type-var]
            assert results[32] == b"1"
            assert await s.delete("seed") is True
            assert s.round_trips == before + 2
        finally:
            await s.close()

    run(scenario)


def test_redis_reloads_scripts_it_lost(redis_url: str, redis_server: object) -> None:
    """After SCRIPT FLUSH (as after a Redis restart) counters and scripts still work, run or
    prepared: the backend loads the scripts again and re-runs the commands that got NOSCRIPT."""
    import socket

    from .redisproc import RedisProcess

    assert isinstance(redis_server, RedisProcess)

    async def scenario() -> None:
        s = RedisBackend(redis_url, timeout=2.0)
        try:
            await s.set("from", 5)
            assert await s.incr("n") == 1
            assert await s.run(MOVE, ["from", "to"], [2]) == [1, 2]
            with socket.create_connection(("127.0.0.1", redis_server.port), timeout=2) as sock:
                sock.sendall(b"SCRIPT FLUSH\r\n")
                assert sock.recv(16).startswith(b"+OK")
            both = await asyncio.gather(s.incr("n"), s.run(MOVE, ["from", "to"], [2]))
            assert both == [2, [1, 4]]
            prepared = s.prepare(MOVE, 2, ())
            with socket.create_connection(("127.0.0.1", redis_server.port), timeout=2) as sock:
                sock.sendall(b"SCRIPT FLUSH\r\n")
                assert sock.recv(16).startswith(b"+OK")
            assert await s.run_prepared(prepared, ["from", "to"], 1) == [1, 5]  # a prepared call too
            assert await s.run_prepared(prepared, ["from", "to"], 1) == [0, 0]
        finally:
            await s.close()

    run(scenario)


def test_a_restarted_redis_gets_the_lost_script_within_the_same_call(tmp_path: Path) -> None:
    """redis-server killed and started again with its data (append-only file) but an empty
    script cache: the first script call after it is answered in that same call, from the
    counts Redis kept, in two round trips (EVALSHA refused with NOSCRIPT, then the script
    itself by EVAL, nothing in between that a second flush could break), and Redis has the
    script cached again: the next call is one round trip."""
    from .redisproc import RedisProcess, require_redis

    require_redis()
    data = tmp_path / "redis-data"
    data.mkdir()
    redis = RedisProcess(("--appendonly", "yes", "--appendfsync", "always", "--dir", str(data))).start()

    async def scenario() -> tuple[list[ScriptResult], list[int]]:
        s = RedisBackend(redis.url, timeout=2.0)
        try:
            await s.set("from", 9)
            answers = [await s.run(MOVE, ["from", "to"], [2])]
            redis.kill()
            with pytest.raises(DependencyUnavailable):
                await s.run(MOVE, ["from", "to"], [2])
            redis.start()
            trips = [s.round_trips]
            answers.append(await s.run(MOVE, ["from", "to"], [2]))
            trips.append(s.round_trips)
            answers.append(await s.run(MOVE, ["from", "to"], [2]))
            trips.append(s.round_trips)
            return answers, [trips[1] - trips[0], trips[2] - trips[1]]
        finally:
            await s.close()

    try:
        answers, trips = run(scenario)
    finally:
        redis.stop()
    assert answers == [[1, 2], [1, 4], [1, 6]]
    assert trips == [2, 1]


def test_redis_script_that_does_not_compile_is_a_bug_not_an_outage(redis_url: str) -> None:
    """A script Redis cannot compile raises Redis' own error (the chain answers 500, a bug
    to fix), not DependencyUnavailable (an outage); the commands sent with it still work."""
    from redis.exceptions import ResponseError

    broken = Script("broken", "return (", lambda store, keys, args: None)

    async def scenario() -> None:
        s = RedisBackend(redis_url, timeout=2.0)
        try:
            outcome, counted = await asyncio.gather(s.run(broken, ["k"]), s.incr("n"), return_exceptions=True)
            assert isinstance(outcome, ResponseError) and not isinstance(outcome, DependencyUnavailable)
            assert counted == 1
        finally:
            await s.close()

    run(scenario)


def test_a_scripts_integers_read_back_as_redis_would_answer(backends: Backends) -> None:
    """The rate limit script's TATs (kept as integers by the memory backend, so a request
    neither parses nor formats them) read back through ``get`` as their decimal bytes, the
    same on both backends, and are found by the next run of the script."""
    from bastion.stages.ratelimit.gcra import GCRA

    async def scenario() -> tuple[object, object, bytes | None]:
        s = backends.make()
        try:
            # Two limits (T = 10 s, tolerance 10 s; T = 0.1 s, tolerance 0) at now = 50 s, in µs.
            # The keys live until their TAT: 10 s, so the read below cannot find one expired
            # however loaded the machine (with T = 1 ms it did, under load).
            first = await s.run(GCRA, ["a", "b"], [50_000_000, 10_000_000, 10_000_000, 100_000, 0])
            second = await s.run(GCRA, ["a", "b"], [50_000_000, 10_000_000, 10_000_000, 100_000, 0])
            return first, second, await s.get("a")
        finally:
            await closing(s)

    first, second, stored = run(scenario)
    assert first == [1, 1, 10_000_000, 0, 100_000]
    assert second == [0, 1, 10_000_000, 0, 100_000]  # b's tolerance is spent: refused, nothing counted
    assert stored == b"60000000"
