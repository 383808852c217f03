"""Requests in flight per consumer counted in Redis: one count for every worker of every
instance, places that are leases (renewed while their request is in flight, freed by
themselves when a worker dies), and the memory backend refused with several workers.

Through in-process workers on free loopback ports and a real redis-server; a test-only head
stage signs requests in as the consumer ``X-Test-User`` names (as in the rate limit tests).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from bastion.config import load_config
from bastion.proxy.worker import Worker
from bastion.services import check_backends
from bastion.stages.concurrency.leases import ACQUIRE, KEY_PREFIX, RELEASE, RENEW
from bastion.state.memory import MemoryBackend
from bastion.state.redis import RedisBackend
from bastion.testing import free_port
from tests.proxy.scripted import ScriptedUpstream
from tests.stages.ratelimit.test_gateway import identity, redis_backends, run, serving, signed_in


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


def write(folder: Path, upstream: ScriptedUpstream, concurrency: dict[str, Any],
          backends: dict[str, Any] | None, name: str = "bastion.yaml") -> tuple[Path, int]:
    port = free_port()
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "access_log": {"enabled": False},
        "services": [{"name": "api", "upstream": {"targets": [upstream.url], "timeouts": {"read": 20, "total": 30}},
                      "policies": {"concurrency": concurrency},
                      "routes": [{"path": "/", "prefix": True, "public": True}]}],
    }
    if backends is not None:
        config["backends"] = backends
    path = folder / name
    path.write_text(json.dumps(config))
    return path, port


async def until(predicate: Any, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never saw {what}")


def test_two_gateways_on_one_redis_share_each_consumers_places(tmp_path: Path, upstream: ScriptedUpstream,
                                                              redis_url: str) -> None:
    """Alice may have 2 requests in flight. With her 2 slow requests in flight on gateway A,
    her request to gateway B is refused with 429 (the count is Redis's, not B's), while bob
    passes on B; once hers are answered, she passes on B, and Redis holds no place of hers."""
    policy = {"max_in_flight": 2}
    path_a, port_a = write(tmp_path, upstream, policy, redis_backends(redis_url), "a.yaml")
    path_b, port_b = write(tmp_path, upstream, policy, redis_backends(redis_url), "b.yaml")
    workers = [Worker(str(p), identity=identity(i, 2), load=signed_in) for i, p in enumerate((path_a, path_b))]
    token = f"shared{time.monotonic_ns()}"

    async def scenario(client: httpx.AsyncClient) -> dict[str, int]:
        def get(port: int, user: str, target: str) -> Any:
            return client.get(f"http://127.0.0.1:{port}{target}", headers={"x-test-user": user}, timeout=20)

        slow = [asyncio.ensure_future(get(port_a, "alice", f"/slow?ms=3000&{token}-{i}")) for i in range(2)]
        await until(lambda: upstream.saw(f"{token}-0") and upstream.saw(f"{token}-1"), "both slow requests upstream")
        refused = await get(port_b, "alice", "/echo")
        bob = await get(port_b, "bob", "/echo")
        answered = [(await s).status_code for s in slow]
        after = await get(port_b, "alice", "/echo")
        inspect = aioredis.from_url(redis_url)
        try:
            # The places are given back just after the answers (by the record sink, batched).
            await until(lambda: _places(inspect, "id-alice", 0), "alice's places given back")
        finally:
            await inspect.aclose()
        return {"refused": refused.status_code, "retry": int(refused.headers["retry-after"]), "bob": bob.status_code,
                "answered": sum(answered), "after": after.status_code}

    answers = run(lambda: serving(workers, scenario))
    assert answers == {"refused": 429, "retry": 1, "bob": 200, "answered": 400, "after": 200}


async def _places(inspect: aioredis.Redis, consumer: str, expected: int) -> bool:
    """Whether Redis holds ``expected`` places of the consumer (the backend's default prefix)."""
    return bool(await inspect.zcard("bastion:" + KEY_PREFIX + consumer) == expected)


def test_a_dead_workers_places_free_themselves_and_a_live_ones_are_renewed(
    tmp_path: Path, upstream: ScriptedUpstream, redis_url: str
) -> None:
    """Gateways with leases of 1 s. Two places of alice taken by a worker that then died
    (taken straight in Redis with leases of 3 s, never renewed nor given back) refuse her
    (max 2) until their leases end, then she passes again, with no restart and nothing
    cleaned by hand. A live worker's slow request
    keeps its place past its lease (the worker renews it: its end moves on) and her next
    request is refused meanwhile (max 1 on the second gateway)."""
    path, port = write(tmp_path, upstream, {"max_in_flight": 2, "lease": 1}, redis_backends(redis_url))
    one_path, one_port = write(tmp_path, upstream, {"max_in_flight": 1, "lease": 1}, redis_backends(redis_url),
                               "one.yaml")
    workers = [Worker(str(path), identity=identity(0, 2), load=signed_in),
               Worker(str(one_path), identity=identity(1, 2), load=signed_in)]
    token = f"lease{time.monotonic_ns()}"

    async def scenario(client: httpx.AsyncClient) -> dict[str, Any]:
        def get(port: int, user: str, target: str) -> Any:
            return client.get(f"http://127.0.0.1:{port}{target}", headers={"x-test-user": user}, timeout=20)

        backend = RedisBackend(redis_url, timeout=1)
        inspect = aioredis.from_url(redis_url)
        try:
            for dead in ("dead-1", "dead-2"):
                taken = await backend.run(ACQUIRE, [KEY_PREFIX + "id-alice"], ["", 2, 3000, dead])
                assert taken is not None and isinstance(taken, list) and taken[0] == 1
            refused = (await get(port, "alice", "/echo")).status_code

            async def passes() -> bool:
                return bool((await get(port, "alice", "/echo")).status_code == 200)

            await until(passes, "the dead worker's places freed")
            # A live worker's long request: carol, at most 1 in flight on the second gateway.
            slow = asyncio.ensure_future(get(one_port, "carol", f"/slow?ms=5000&{token}"))
            await until(lambda: upstream.saw(token), "carol's slow request upstream")
            first = await _lease_end(inspect, "id-carol")
            await until(lambda: _renewed(inspect, "id-carol", first), "carol's lease renewed")
            during = (await get(one_port, "carol", "/echo")).status_code
            done = (await slow).status_code
        finally:
            await backend.close()
            await inspect.aclose()
        return {"refused": refused, "during": during, "done": done}

    answers = run(lambda: serving(workers, scenario))
    assert answers == {"refused": 429, "during": 429, "done": 200}


async def _lease_end(inspect: aioredis.Redis, consumer: str) -> int:
    """When the consumer's only place's lease ends (Redis's clock, ms)."""
    ((_, end),) = await inspect.zrange("bastion:" + KEY_PREFIX + consumer, 0, -1, withscores=True)
    return int(end)


async def _renewed(inspect: aioredis.Redis, consumer: str, first: int) -> bool:
    return await _lease_end(inspect, consumer) > first


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_the_lease_scripts_agree_on_both_backends(kind: str, request: pytest.FixtureRequest) -> None:
    """ACQUIRE admits up to the most places and refuses one more without taking it, drops
    ended leases first; RELEASE frees a place; RENEW renews only the leases still there --
    the same on the memory backend's copy as on Redis."""
    key = KEY_PREFIX + "c"

    async def scenario() -> list[object]:
        if kind == "redis":
            backend: Any = RedisBackend(request.getfixturevalue("redis_url"), timeout=1)
        else:
            backend = MemoryBackend(lambda: 0.0)
        try:
            out: list[object] = []
            for member in ("a", "b", "c"):
                out.append(await backend.run(ACQUIRE, [key], [1000, 2, 5000, member]))
            out.append(await backend.run(RELEASE, [key], ["a"]))
            out.append(await backend.run(ACQUIRE, [key], [1000, 2, 5000, "c"]))
            out.append(await backend.run(RENEW, [key, key], [1200, 5000, "b", "a"]))  # b to 6200; a is gone
            out.append(await backend.run(ACQUIRE, [key], [6100, 2, 5000, "d"]))  # c's lease ended at 6000
            return out
        finally:
            await backend.close()

    assert run(scenario) == [[1, 1], [1, 2], [0, 2], 0, [1, 2], 1, [1, 2]]


def test_the_memory_backend_is_refused_with_several_workers(tmp_path: Path, upstream: ScriptedUpstream) -> None:
    """On the per-process memory backend, 2 workers would each let a consumer have
    max_in_flight: refused, naming the stage and the fix; one worker is fine."""
    path, _ = write(tmp_path, upstream, {"max_in_flight": 4}, None)
    issue = check_backends(load_config(path), 2)
    assert issue is not None and "the stage concurrency (route api:/)" in issue.message
    assert "Set backends: {state: redis" in issue.message
    assert check_backends(load_config(path), 1) is None


def test_places_taken_after_a_reload_onto_redis_are_given_back(tmp_path: Path, upstream: ScriptedUpstream,
                                                               redis_url: str) -> None:
    """A worker started on the memory backend is reloaded onto Redis: alice's requests from
    then on take their places in Redis, and each is given back once answered (the record sink
    follows the backend that took the place, not the one the worker started with), before
    any request read after it takes one: with max 1, requests one after the other all pass,
    and Redis holds no place of hers afterwards."""
    path, port = write(tmp_path, upstream, {"max_in_flight": 1}, None)
    worker = Worker(str(path), identity=identity(), load=signed_in)

    async def scenario(client: httpx.AsyncClient) -> list[int]:
        write(tmp_path, upstream, {"max_in_flight": 1}, redis_backends(redis_url))
        config = json.loads(path.read_text())
        config["listen"]["port"] = port
        path.write_text(json.dumps(config))
        assert await worker.apply_reload()

        async def get() -> int:
            return (await client.get(f"http://127.0.0.1:{port}/echo", headers={"x-test-user": "alice"})).status_code

        inspect = aioredis.from_url(redis_url)
        try:
            codes = [await get()]
            # The first give-back also loads its script into Redis: let it land before the pair.
            await until(lambda: _places(inspect, "id-alice", 0), "alice's first place given back")
            codes += [await get(), await get()]
            await until(lambda: _places(inspect, "id-alice", 0), "alice's places given back")
            assert await inspect.exists("bastion:" + KEY_PREFIX + "id-alice") == 0
        finally:
            await inspect.aclose()
        return codes

    assert run(lambda: serving([worker], scenario)) == [200, 200, 200]
