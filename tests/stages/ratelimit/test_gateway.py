"""Rate limits through real gateways: in-process workers on free loopback ports, real HTTP
through them, a scripted upstream behind, and the memory backend or a real redis-server.

A small test-only head stage stands in for ``auth``: it signs a request in as the consumer
its ``X-Test-User`` header names (what auth does once a credential is verified). Every other
stage is the one the configuration builds. Time is the worker's settable clock on the
memory backend; nothing here asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvloop

from bastion.config import LoadedConfig, load_config
from bastion.pipeline.stage import HeadStage, StageConfig
from bastion.proxy.worker import Worker
from bastion.services import Clock, WorkerIdentity, check_backends
from bastion.stages.auth import AuthStage
from bastion.testing import GatewayProcess, free_port
from bastion.types import Exchange, Principal
from tests.proxy.scripted import ScriptedUpstream
from tests.state.redisproc import RedisProcess

T = TypeVar("T")


class SignIn(HeadStage):
    """Test only: the consumer ``X-Test-User`` names (anonymous without it)."""

    def __init__(self) -> None:
        super().__init__("signin", StageConfig())

    def on_request_head(self, exchange: Exchange) -> None:
        name = exchange.request.header("x-test-user")
        if name is not None:
            exchange.principal = Principal(f"id-{name}", name, f"key-{name}")


def signed_in(path: str) -> LoadedConfig:
    """``load_config``, with :class:`SignIn` in place of the auth stage on every route."""
    loaded = load_config(path)
    routes = [replace(r, built=(SignIn(), *(s for s in r.built if not isinstance(s, AuthStage))))
              for r in loaded.routes]
    return replace(loaded, routes=tuple(routes))


class ManualClock(Clock):
    """The worker's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


def write_config(folder: Path, upstream: ScriptedUpstream, ratelimit: dict[str, Any],
                 backends: dict[str, Any] | None = None, name: str = "bastion.yaml",
                 others: dict[str, Any] | None = None) -> tuple[Path, int]:
    """A gateway config with the ``ratelimit`` policy (and the ``others``, by stage name)."""
    port = free_port()
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "access_log": {"enabled": False},
        "services": [{"name": "api", "upstream": upstream.url, "policies": {"ratelimit": ratelimit, **(others or {})},
                      "routes": [{"path": "/", "prefix": True, "public": True}]}],
    }
    if backends is not None:
        config["backends"] = backends
    path = folder / name
    path.write_text(json.dumps(config))  # JSON is YAML
    return path, port


def redis_backends(url: str) -> dict[str, Any]:
    return {"state": "redis", "redis": {"url": url, "timeout": 0.5}}


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return uvloop.run(scenario())  # type: ignore[arg-type]


def identity(index: int = 0, workers: int = 1) -> WorkerIdentity:
    return WorkerIdentity("ratelimit-test", index, workers, os.getpid())


async def serving(workers: list[Worker], scenario: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    for w in workers:
        await w.start()
    try:
        async with httpx.AsyncClient() as client:
            return await scenario(client)
    finally:
        for w in workers:
            await w.stop()


@pytest.mark.parametrize("algorithm", ["gcra", "sliding-window"])
def test_two_gateways_on_one_redis_admit_exactly_the_limit(tmp_path: Path, upstream: ScriptedUpstream,
                                                           redis_url: str, algorithm: str) -> None:
    """Two gateways (two workers, each its own services and Redis connection) share one
    limit of 25 per hour, with either algorithm: of 80 concurrent requests spread over both,
    exactly 25 get 200 and the other 55 get 429; a second wave gets 80 refusals (the next
    request is due in 144 s, or, for the sliding window, in an hour)."""
    limit = {"limit": 25, "window": "1h", "by": "global", "algorithm": algorithm}
    path_a, port_a = write_config(tmp_path, upstream, limit, redis_backends(redis_url), "a.yaml")
    path_b, port_b = write_config(tmp_path, upstream, limit, redis_backends(redis_url), "b.yaml")
    workers = [Worker(str(p), identity=identity(i, 2), load=signed_in) for i, p in enumerate((path_a, path_b))]

    async def scenario(client: httpx.AsyncClient) -> tuple[list[int], list[int]]:
        async def wave() -> list[int]:
            results = await asyncio.gather(*(client.get(f"http://127.0.0.1:{port}/x")
                                             for _ in range(40) for port in (port_a, port_b)))
            return sorted(r.status_code for r in results)
        return await wave(), await wave()

    first, second = run(lambda: serving(workers, scenario))
    assert first == [200] * 25 + [429] * 55
    assert second == [429] * 80


def test_answers_carry_the_ratelimit_fields_and_a_refusal_is_a_problem(tmp_path: Path,
                                                                       upstream: ScriptedUpstream) -> None:
    """3 per 30 s: each 200 says what is left (``RateLimit: "name";r=2;t=10`` ...), the fourth
    request is a 429 problem document with ``Retry-After: 10``, ``r=0`` and the policy; the
    refused request never reaches the upstream."""
    path, port = write_config(tmp_path, upstream, {"limit": 3, "window": "30s", "by": "ip", "name": "per-ip"})
    worker = Worker(str(path), identity=identity(), load=signed_in, clock=ManualClock())

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.get(f"http://127.0.0.1:{port}/items-headers") for _ in range(4)]

    answers = run(lambda: serving([worker], scenario))
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["ratelimit"] for a in answers[:3]] == [
        '"per-ip";r=2;t=10', '"per-ip";r=1;t=20', '"per-ip";r=0;t=30']
    assert all(a.headers["ratelimit-policy"] == '"per-ip";q=3;w=30' for a in answers)
    refused = answers[3]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "10"
    assert refused.headers["ratelimit"] == '"per-ip";r=0;t=10'
    assert refused.json()["status"] == 429 and refused.json()["title"] == "Too Many Requests"
    assert len(upstream.records("/items-headers")) == 3


@pytest.mark.parametrize("headers_stage", [False, True], ids=["fields-only", "with-headers-stage"])
def test_each_answer_carries_the_fields_once_however_it_is_sent(tmp_path: Path, upstream: ScriptedUpstream,
                                                                headers_stage: bool) -> None:
    """The RateLimit fields are on a complete answer the proxy forwards as the upstream's own
    bytes (no other stage looks at responses: the fields appended to its head) and on one
    whose head is rebuilt (the ``headers`` stage on too), on a streamed (chunked) answer as
    well: once each, with the count of that request, and the upstream's own headers intact."""
    others = {"access": {"enabled": False}, "headers": {"enabled": headers_stage}}
    path, port = write_config(tmp_path, upstream, {"limit": 4, "window": "40s", "by": "ip", "name": "ip"},
                              others=others)
    worker = Worker(str(path), identity=identity(), load=signed_in, clock=ManualClock())

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [await client.get(f"http://127.0.0.1:{port}/{where}") for where in ("x", "chunked", "x", "chunked")]

    answers = run(lambda: serving([worker], scenario))
    assert [a.status_code for a in answers] == [200, 200, 200, 200]
    assert [a.headers.get_list("ratelimit") for a in answers] == [
        ['"ip";r=3;t=10'], ['"ip";r=2;t=20'], ['"ip";r=1;t=30'], ['"ip";r=0;t=40']]
    assert all(a.headers.get_list("ratelimit-policy") == ['"ip";q=4;w=40'] for a in answers)
    assert [a.json()["target"] for a in answers[::2]] == ["/x", "/x"]  # the upstream's echo, whole
    assert all(a.headers.get("transfer-encoding") == "chunked" for a in answers[1::2])
    assert all(("x-frame-options" in a.headers) is headers_stage for a in answers)


def test_by_consumer_counts_each_consumer_and_by_ip_counts_the_address(tmp_path: Path,
                                                                      upstream: ScriptedUpstream) -> None:
    """With 2 per minute by consumer, alice and bob (same client IP) each get 2; an anonymous
    request is counted by its IP. With 2 per minute by ip, alice and bob share the address's 2."""
    by_consumer, port_c = write_config(tmp_path, upstream, {"limit": 2, "window": "1m", "by": "consumer"},
                                       name="c.yaml")
    by_ip, port_i = write_config(tmp_path, upstream, {"limit": 2, "window": "1m", "by": "ip"}, name="i.yaml")
    workers = [Worker(str(p), identity=identity(), load=signed_in, clock=ManualClock()) for p in (by_consumer, by_ip)]

    async def scenario(client: httpx.AsyncClient) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for port in (port_c, port_i):
            codes = []
            for user in ("alice", "alice", "alice", "bob", "bob", "bob", None, None, None):
                headers = {"x-test-user": user} if user else {}
                codes.append((await client.get(f"http://127.0.0.1:{port}/x", headers=headers)).status_code)
            out[port] = codes
        return out

    codes = run(lambda: serving(workers, scenario))
    assert codes[port_c] == [200, 200, 429, 200, 200, 429, 200, 200, 429]
    assert codes[port_i] == [200, 200, 429, 429, 429, 429, 429, 429, 429]


def test_a_client_hammering_while_limited_recovers_on_time(tmp_path: Path, upstream: ScriptedUpstream) -> None:
    """2 per 10 s (one request per 5 s once the burst is spent): a client that sends 50
    refused requests while limited is admitted again 5 s after its burst, by the clock, as
    if it had waited quietly -- refusals consumed nothing."""
    clock = ManualClock()
    path, port = write_config(tmp_path, upstream, {"limit": 2, "window": "10s", "by": "ip"})
    worker = Worker(str(path), identity=identity(), load=signed_in, clock=clock)

    async def scenario(client: httpx.AsyncClient) -> list[tuple[float, int]]:
        seen = []
        start = clock.now
        for step in range(120):  # every 50 ms for 6 s
            clock.now = start + step * 0.05
            seen.append((round(step * 0.05, 2), (await client.get(f"http://127.0.0.1:{port}/x")).status_code))
        return seen

    seen = run(lambda: serving([worker], scenario))
    admitted = [t for t, code in seen if code == 200]
    assert admitted == [0.0, 0.05, 5.0]
    assert sum(1 for _, code in seen if code == 429) == 117


def test_redis_down_is_503_by_default_and_recovers(tmp_path: Path, upstream: ScriptedUpstream,
                                                   own_redis: RedisProcess) -> None:
    """Redis killed: a rate-limited route answers 503 (failure_mode closed: a limit that
    cannot count does not let everything through); when Redis is back, 200 again."""
    path, port = write_config(tmp_path, upstream, {"limit": 100, "window": "10s", "by": "ip"},
                              redis_backends(own_redis.url))
    worker = Worker(str(path), identity=identity(), load=signed_in)

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        url = f"http://127.0.0.1:{port}/x"
        answers = [await client.get(url)]
        own_redis.kill()
        answers.append(await client.get(url))
        own_redis.start()
        answers.append(await client.get(url))
        return answers

    up, down, back = run(lambda: serving([worker], scenario))
    assert up.status_code == 200 and up.headers["ratelimit"].endswith(";r=99;t=1")
    assert down.status_code == 503
    assert down.headers["content-type"] == "application/problem+json"
    assert "redis" not in down.text.lower() and "ratelimit" not in down.headers
    assert back.status_code == 200 and back.headers["ratelimit"].endswith(";r=99;t=1")


def test_a_redis_restarted_with_its_data_but_no_scripts_goes_on_counting(tmp_path: Path,
                                                                          upstream: ScriptedUpstream) -> None:
    """A redis-server that keeps its data on disk (append-only file) is killed and started
    again: the limit's counts survive, its scripts do not. The first requests after the
    restart, concurrent, get neither a 429 nor an error for the lost script (the same
    requests send it again): of 4, exactly the 1 the limit has left is admitted, with
    ``r=0``, and 3 are refused as the count says."""
    data = tmp_path / "redis-data"
    data.mkdir()
    redis = RedisProcess(("--appendonly", "yes", "--appendfsync", "always", "--dir", str(data))).start()
    try:
        path, port = write_config(tmp_path, upstream, {"limit": 3, "window": "1h", "by": "global"},
                                  redis_backends(redis.url))
        worker = Worker(str(path), identity=identity(), load=signed_in)

        async def scenario(client: httpx.AsyncClient) -> tuple[list[httpx.Response], int, list[httpx.Response]]:
            url = f"http://127.0.0.1:{port}/x"
            before = [await client.get(url), await client.get(url)]
            redis.kill()
            down = (await client.get(url)).status_code
            redis.start()
            return before, down, list(await asyncio.gather(*(client.get(url) for _ in range(4))))

        before, down, after = run(lambda: serving([worker], scenario))
    finally:
        redis.stop()
    assert [r.headers["ratelimit"].split(";")[1] for r in before] == ["r=2", "r=1"]
    assert down == 503
    assert sorted(r.status_code for r in after) == [200, 429, 429, 429]
    [admitted] = [r for r in after if r.status_code == 200]
    assert admitted.headers["ratelimit"].split(";")[1] == "r=0"


def test_the_memory_backend_is_refused_with_several_workers(tmp_path: Path, upstream: ScriptedUpstream) -> None:
    """A limit of 10 on the per-process memory backend with 2 workers would be 20: refused,
    naming the stage, the route and the fix."""
    path, _ = write_config(tmp_path, upstream, {"limit": 10, "window": "10s"})
    issue = check_backends(load_config(path), 2)
    assert issue is not None and "the stage ratelimit (route api:/)" in issue.message
    assert "Set backends: {state: redis" in issue.message
    assert check_backends(load_config(path), 1) is None


def test_two_instances_of_two_worker_processes_admit_exactly_the_limit(upstream: ScriptedUpstream,
                                                                       redis_url: str) -> None:
    """The deployment the limit is for: two ``bastion serve`` instances, each with two worker
    processes, on one Redis, a limit of 30 per hour: of 100 concurrent requests (each on its
    own connection, so the kernel spreads them over the workers) exactly 30 get 200."""
    config = {
        "access_log": {"enabled": False},
        "backends": redis_backends(redis_url),
        "services": [{"name": "api", "upstream": upstream.url,
                      "policies": {"ratelimit": {"limit": 30, "window": "1h", "by": "global"}},
                      "routes": [{"path": "/", "prefix": True, "public": True}]}],
    }
    with GatewayProcess(config, workers=2) as one, GatewayProcess(config, workers=2) as two:

        async def scenario() -> list[int]:
            async def get(url: str) -> int:
                async with httpx.AsyncClient() as client:  # a connection of its own
                    return (await client.get(url + "/x")).status_code

            return sorted(await asyncio.gather(*(get(g.url) for _ in range(50) for g in (one, two))))

        codes = run(scenario)
    assert codes == [200] * 30 + [429] * 70
