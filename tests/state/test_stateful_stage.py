"""A stateful stage in a real worker: started and closed once, state shared and kept.

The toy :class:`~tests.state.toy.CountingStage` counts each client's requests in the
worker's state backend and refuses past a limit. Workers run in-process (their listener on
a free loopback port, real HTTP through them, a scripted upstream behind), on the memory
backend or on a real redis-server that some tests kill and start again.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvloop

from bastion.config import ConfigError, load_config
from bastion.control import supervisor as supervisor_module
from bastion.proxy import worker as worker_module
from bastion.proxy.metrics import METRICS
from bastion.proxy.worker import Worker, WorkerStartError
from bastion.services import WorkerIdentity, check_backends
from bastion.state.memory import MemoryBackend
from bastion.state.redis import RedisBackend
from bastion.testing import free_port

from ..proxy.scripted import ScriptedUpstream
from .redisproc import RedisProcess
from .toy import ToyLoader

T = TypeVar("T")


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


def write_config(folder: Path, upstream: ScriptedUpstream, backends: dict[str, Any] | None = None,
                 name: str = "bastion.yaml") -> tuple[Path, int]:
    port = free_port()
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "access_log": {"enabled": False},
        "services": [{"name": "api", "upstream": upstream.url,
                      "routes": [{"path": "/", "prefix": True, "public": True}]}],
    }
    if backends is not None:
        config["backends"] = backends
    path = folder / name
    path.write_text(json.dumps(config))  # JSON is YAML
    return path, port


def redis_backends(url: str) -> dict[str, Any]:
    return {"state": "redis", "redis": {"url": url, "timeout": 0.5}}


def identity(index: int = 0, workers: int = 1) -> WorkerIdentity:
    return WorkerIdentity("test-instance", index, workers, os.getpid())


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await scenario()

    return uvloop.run(main())


async def statuses(client: httpx.AsyncClient, port: int, n: int) -> list[int]:
    """``n`` requests, one after the other, through the gateway on ``port``."""
    return [(await client.get(f"http://127.0.0.1:{port}/count")).status_code for _ in range(n)]


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.01)


def stage_errors() -> float:
    return METRICS.counters["bastion_stage_errors"].get(("counter",), 0.0)


def test_stage_is_started_once_and_closed_once(tmp_path: Path, upstream: ScriptedUpstream) -> None:
    """The worker starts each stage object once, with its services, before serving, and
    closes it once when it stops; loading the configuration alone (as ``bastion check``
    and the supervisor do) starts nothing."""
    path, port = write_config(tmp_path, upstream)
    loader = ToyLoader(limit=2)
    loader(str(path))
    assert [(s.starts, s.closes) for s in loader.stages] == [(0, 0)]  # compiled, not started
    loader.stages.clear()
    worker = Worker(str(path), identity=identity(), load=loader)

    async def scenario() -> None:
        await worker.start()
        [stage] = loader.stages
        assert (stage.starts, stage.closes) == (1, 0)
        assert stage.services is worker.services
        assert isinstance(stage.services.state, MemoryBackend)
        assert stage.services.identity == identity()
        async with httpx.AsyncClient() as client:
            assert await statuses(client, port, 3) == [200, 200, 429]
        await worker.stop()
        assert (stage.starts, stage.closes) == (1, 1)
        assert worker.services is not None and worker.services.closed

    run(scenario)


def test_two_workers_share_one_count_on_redis(tmp_path: Path, upstream: ScriptedUpstream, redis_url: str) -> None:
    """Two workers (two runtimes, two services, two connection pools) on one Redis keep one
    count: with a limit of 10, 14 concurrent requests spread over both are let through
    exactly 10 times, and Redis holds 14."""
    path_a, port_a = write_config(tmp_path, upstream, redis_backends(redis_url), "a.yaml")
    path_b, port_b = write_config(tmp_path, upstream, redis_backends(redis_url), "b.yaml")
    workers = [Worker(str(p), identity=identity(i, 2), load=ToyLoader(limit=10)) for i, p in
               enumerate((path_a, path_b))]

    async def scenario() -> None:
        for w in workers:
            await w.start()
        try:
            assert workers[0].services is not workers[1].services
            async with httpx.AsyncClient() as client:
                results = await asyncio.gather(*(client.get(f"http://127.0.0.1:{port}/count")
                                                 for _ in range(7) for port in (port_a, port_b)))
            codes = sorted(r.status_code for r in results)
            assert codes == [200] * 10 + [429] * 4
            state = workers[0].services.state if workers[0].services else None
            assert state is not None and await state.get("counter:127.0.0.1") == b"14"
        finally:
            for w in workers:
                await w.stop()

    run(scenario)


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_count_and_services_survive_a_reload(tmp_path: Path, upstream: ScriptedUpstream, backend: str,
                                             request: pytest.FixtureRequest,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """After a reload the new stage objects are started with the same services (same state
    backend, same counts), and the replaced ones are closed once after the grace: 3
    requests before and 3 after a reload, with a limit of 5, give five 200s and one 429."""
    monkeypatch.setattr(worker_module, "RELOAD_GRACE", 0.0)
    backends = redis_backends(request.getfixturevalue("redis_url")) if backend == "redis" else None
    path, port = write_config(tmp_path, upstream, backends)
    loader = ToyLoader(limit=5)
    worker = Worker(str(path), identity=identity(), load=loader)

    async def scenario() -> None:
        await worker.start()
        try:
            async with httpx.AsyncClient() as client:
                assert await statuses(client, port, 3) == [200, 200, 200]
                services = worker.services
                assert await worker.apply_reload() is True
                old, new = loader.stages
                assert worker.services is services and new.services is services
                assert (new.starts, new.closes) == (1, 0)
                await wait_until(lambda: old.closes == 1, "the replaced stage is closed")
                assert old.starts == 1
                assert await statuses(client, port, 3) == [200, 200, 429]
        finally:
            await worker.stop()
        assert [(s.starts, s.closes) for s in loader.stages] == [(1, 1), (1, 1)]

    run(scenario)


def test_changed_backends_on_reload_get_new_services(tmp_path: Path, upstream: ScriptedUpstream,
                                                     redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload that changes ``backends`` (memory to redis) starts the new stages with new
    services on the new backend, and closes the old services with the old stages."""
    monkeypatch.setattr(worker_module, "RELOAD_GRACE", 0.0)
    path, port = write_config(tmp_path, upstream)
    loader = ToyLoader(limit=2)
    worker = Worker(str(path), identity=identity(), load=loader)

    async def scenario() -> None:
        await worker.start()
        try:
            async with httpx.AsyncClient() as client:
                assert await statuses(client, port, 3) == [200, 200, 429]
                old_services = worker.services
                config = json.loads(path.read_text())
                config["backends"] = redis_backends(redis_url)
                path.write_text(json.dumps(config))
                assert await worker.apply_reload() is True
                assert worker.services is not old_services and worker.services is not None
                assert isinstance(worker.services.state, RedisBackend)
                assert loader.stages[1].services is worker.services
                await wait_until(lambda: old_services is not None and old_services.closed, "old services closed")
                assert loader.stages[0].closes == 1
                # A new backend, a new count.
                assert await statuses(client, port, 3) == [200, 200, 429]
        finally:
            await worker.stop()

    run(scenario)


def test_stop_closes_stages_still_in_their_reload_grace(tmp_path: Path, upstream: ScriptedUpstream) -> None:
    """A worker stopping soon after a reload closes the replaced stages too (once), without
    waiting for the rest of their grace."""
    path, _ = write_config(tmp_path, upstream)
    loader = ToyLoader()
    worker = Worker(str(path), identity=identity(), load=loader)

    async def scenario() -> None:
        await worker.start()
        assert await worker.apply_reload() is True
        await worker.stop()

    run(scenario)
    assert [(s.starts, s.closes) for s in loader.stages] == [(1, 1), (1, 1)]


def test_a_stage_that_cannot_start(tmp_path: Path, upstream: ScriptedUpstream) -> None:
    """A stage whose start fails keeps the worker from starting (the error names the stage
    and route), and on a reload rejects the new configuration: the previous one keeps
    serving, and the new stages that had started are closed again."""
    path, port = write_config(tmp_path, upstream)
    loader = ToyLoader(limit=3)
    loader.broken_start = True
    with pytest.raises(WorkerStartError, match=r"stage broken \(route api:/\) could not start: "
                                               r"DependencyUnavailable: the key server"):
        run(Worker(str(path), identity=identity(), load=loader).start)
    assert [(s.starts, s.closes) for s in loader.stages] == [(1, 1)]

    loader = ToyLoader(limit=3)
    worker = Worker(str(path), identity=identity(), load=loader)

    async def scenario() -> None:
        await worker.start()
        try:
            async with httpx.AsyncClient() as client:
                assert await statuses(client, port, 2) == [200, 200]
                loader.broken_start = True
                assert await worker.apply_reload() is False
                first, rejected = loader.stages
                assert (rejected.starts, rejected.closes) == (1, 1)
                assert (first.starts, first.closes) == (1, 0)
                assert await statuses(client, port, 2) == [200, 429]  # still the first stage's count
        finally:
            await worker.stop()

    run(scenario)


@pytest.mark.parametrize("failure_mode", ["closed", "open"])
def test_redis_down_fails_by_failure_mode_and_recovers(tmp_path: Path, upstream: ScriptedUpstream,
                                                       own_redis: RedisProcess, failure_mode: str) -> None:
    """Redis killed mid-test: under failure_mode closed the stage's requests get a 503
    problem document, under open they pass; either way each failure is counted. When Redis
    is back (same port, empty) requests are counted again, without a restart."""
    path, port = write_config(tmp_path, upstream, redis_backends(own_redis.url))
    loader = ToyLoader(limit=1000, failure_mode=failure_mode)  # type: ignore[arg-type]
    worker = Worker(str(path), identity=identity(), load=loader)

    async def scenario() -> None:
        await worker.start()
        try:
            async with httpx.AsyncClient() as client:
                url = f"http://127.0.0.1:{port}/count"
                assert (await client.get(url)).status_code == 200
                own_redis.kill()
                errors_before = stage_errors()
                down = await client.get(url)
                if failure_mode == "closed":
                    assert down.status_code == 503
                    assert down.headers["content-type"] == "application/problem+json"
                    assert down.json()["detail"] == "A security check could not be completed; the request was refused."
                    assert "redis" not in down.text
                else:
                    assert down.status_code == 200
                    assert down.json()["target"] == "/count"  # it reached the upstream
                assert stage_errors() == errors_before + 1
                own_redis.start()
                assert (await client.get(url)).status_code == 200
                assert stage_errors() == errors_before + 1
                state = worker.services.state if worker.services else None
                assert state is not None and await state.get("counter:127.0.0.1") == b"1"
        finally:
            await worker.stop()

    run(scenario)


def test_memory_backend_refused_with_several_workers(tmp_path: Path, upstream: ScriptedUpstream,
                                                     redis_url: str) -> None:
    """With more than one worker, the per-process memory backend is a config error as soon
    as a stage keeps state (each worker would count on its own), naming the stage, the
    route and the fix; it is fine with one worker, with Redis, or with no stateful stage."""
    path, _ = write_config(tmp_path, upstream)
    with pytest.raises(ConfigError) as info:
        Worker(str(path), identity=identity(0, 2), load=ToyLoader())
    [issue] = info.value.issues
    assert issue.field == "backends.state"
    assert issue.file == str(path)
    assert issue.message.startswith(
        "the stage counter (route api:/) keeps state, and the memory backend keeps it in each worker process: "
        "2 workers would each count on their own."
    )
    assert "state: redis" in issue.message and "--workers 1" in issue.message
    Worker(str(path), identity=identity(0, 1), load=ToyLoader())
    assert check_backends(load_config(path), 8) is None  # the shipped stages keep no state
    redis_path, _ = write_config(tmp_path, upstream, redis_backends(redis_url), "redis.yaml")
    Worker(str(redis_path), identity=identity(0, 2), load=ToyLoader())


def test_supervisor_refuses_memory_backend_for_several_workers(tmp_path: Path, upstream: ScriptedUpstream,
                                                               redis_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``bastion serve --workers 2`` refuses to start on the memory backend when a stage
    keeps state, and rejects a reload that would bring the memory backend back, keeping
    the running configuration."""
    monkeypatch.setattr(supervisor_module, "load_config", ToyLoader())
    path, _ = write_config(tmp_path, upstream)
    with pytest.raises(ConfigError, match="keeps state, and the memory backend"):
        supervisor_module.Supervisor(path, workers=2)
    path.write_text(json.dumps({**json.loads(path.read_text()), "backends": redis_backends(redis_url)}))
    sup = supervisor_module.Supervisor(path, workers=2)
    try:
        running = sup.loaded
        path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "backends"}))
        [error] = sup.reload()
        assert "backends.state: the stage counter (route api:/) keeps state" in error
        assert sup.loaded is running
    finally:
        shutil.rmtree(sup.metrics_dir, ignore_errors=True)
