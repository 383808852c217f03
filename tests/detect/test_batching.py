"""The detectors count a tick's records in bulk, over a real state backend (memory) and a
real webhook server: the same records, counted one at a time or in batches of any size,
raise the same alerts (same count, same triggering record, same summary); a batch costs
one state call per key, not per record; and a started sink counts what it is handed within
a tick, without anyone draining it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

import pytest

from bastion.config.detectors import DetectorsSettings
from bastion.detect import Detectors
from bastion.detect.sink import _digest
from bastion.services import Services, WorkerIdentity
from bastion.state.interface import Script, ScriptArg, ScriptResult, StateBackend, Subscription, Value
from bastion.state.memory import MemoryBackend
from bastion.types import ExchangeRecord
from tests.detect.test_baseline_detectors import ERRORS, SPIKE, T0, failed_login, route_traffic, steady
from tests.detect.webhook import WebhookServer

NAMES = ("brute_force", "scanner", "token_sharing", "injection", "enumeration", "account_brute_force",
         "traffic_spike", "error_spike")


def record(ts: float, client: str, path: str, status: int = 200, *, consumer: str | None = None,
           credential: str | None = None, blocked_by: str | None = None) -> ExchangeRecord:
    return ExchangeRecord(
        ts=ts, request_id="r", client=client, method="GET", path=path, route="api:/orders/{id}", service="api",
        status=status, bytes_in=0, bytes_out=10, seconds=0.001, consumer=consumer, credential=credential,
        blocked_by=blocked_by,
    )


def alerts_of(settings: dict[str, Any], records: list[ExchangeRecord], size: int) -> list[dict[str, Any]]:
    """The alerts (without their id and instance) that ``records`` raise when the sink counts
    them ``size`` at a time; only the detectors named in ``settings`` run."""
    off = {name: {"enabled": False} for name in NAMES if name not in settings}

    async def go(url: str) -> None:
        services = Services(MemoryBackend(), WorkerIdentity("test", 0, 1, os.getpid()))
        sink = Detectors(
            DetectorsSettings.model_validate({"enabled": True, **off, **settings, "webhooks": [{"url": url}]}),
            services,
        )
        for start in range(0, len(records), size):
            for r in records[start:start + size]:
                sink(r)
            await sink.drain()
        await sink.close()
        await services.close()

    with WebhookServer() as hook:
        asyncio.run(go(hook.url))
        docs = [a.json() for a in hook.wait(1, timeout=1.0)]
    for doc in docs:
        del doc["id"], doc["instance"]
    return docs


PATTERNS: dict[str, tuple[dict[str, Any], list[ExchangeRecord]]] = {
    "brute_force": ({"brute_force": {"threshold": 5}},
                    [record(T0 + n, "198.51.100.7", "/login", 401) for n in range(9)]),
    "scanner probes": ({"scanner": {"probe_threshold": 3}},
                       [record(T0 + n, "203.0.113.9", p) for n, p in enumerate(("/.env", "/", "/.git/config", "/",
                                                                                 "/wp-admin", "/actuator"))]),
    "scanner 404s": ({"scanner": {"error_threshold": 6}},
                     [record(T0 + n, "203.0.113.9", f"/x{n}", 404 if n % 3 else 200) for n in range(14)]),
    "injection": ({"injection": {"threshold": 4}},
                  [record(T0 + n, "198.51.100.4", "/s", 403, blocked_by="detection" if n % 2 else None)
                   for n in range(12)]),
    "token_sharing": ({"token_sharing": {"max_ips": 3}},
                      [record(T0 + n, f"10.0.0.{n // 2}", "/orders", credential="key-7f3a") for n in range(14)]),
    "enumeration": ({"enumeration": {"distinct": 6, "denied_ratio": 0.5}},
                    [record(T0 + n, "10.0.0.9", f"/orders/{n // 2}", 200 if n % 5 == 0 else 404, consumer="c-1")
                     for n in range(24)]),
    "account_brute_force": ({"account_brute_force": {}},
                            [failed_login(T0 + n, f"198.51.100.{n % 4}", locked=n >= 9) for n in range(12)]),
    "traffic_spike": (SPIKE, steady("c-7", 10, 5) + steady("c-7", 50, 1, start=5)),
    "error_spike": (ERRORS, route_traffic(3, 50, 2) + route_traffic(1, 50, 25, start=3)),
}


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_batches_of_any_size_raise_the_alert_one_record_at_a_time_raises(pattern: str) -> None:
    """Each detector's attack pattern counted one record at a time, in batches of 7 (a
    threshold reached in the middle of a batch, or across two), and all in one batch raises
    exactly one alert, the same each time: its count, summary and time span are those of
    the record that reached the threshold, not of the batch's last one."""
    settings, records = PATTERNS[pattern]
    one_by_one = alerts_of(settings, records, 1)
    assert len(one_by_one) == 1
    assert alerts_of(settings, records, 7) == one_by_one
    assert alerts_of(settings, records, len(records)) == one_by_one


class OverMemory(StateBackend):
    """A memory backend's answers through a class a test can change (the memory backend is
    compiled in production, and interpreted classes cannot inherit from compiled ones)."""

    immediate = True  # as the memory backend's

    def __init__(self) -> None:
        self.inner = MemoryBackend()

    def run_now(self, script: Script, keys: Sequence[str], args: Sequence[ScriptArg] = ()) -> ScriptResult:
        return self.inner.run_now(script, keys, args)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        return await self.inner.incr(key, amount, ttl)

    async def get(self, key: str) -> bytes | None:
        return await self.inner.get(key)

    async def set(self, key: str, value: Value, ttl: float | None = None) -> None:
        await self.inner.set(key, value, ttl)

    async def delete(self, key: str) -> bool:
        return await self.inner.delete(key)

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[ScriptArg] = ()) -> ScriptResult:
        return await self.inner.run(script, keys, args)

    async def publish(self, channel: str, message: bytes) -> None:
        await self.inner.publish(channel, message)

    async def subscribe(self, channel: str) -> Subscription:
        return await self.inner.subscribe(channel)

    async def close(self) -> None:
        await self.inner.close()


class CountingBackend(OverMemory):
    """The memory backend, counting the increments it is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.increments = 0

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        self.increments += 1
        return await super().incr(key, amount, ttl)


def test_a_batch_costs_one_state_call_per_key_not_per_record() -> None:
    """Two hundred anonymous requests of one route answered 200, then forty from one client
    answered 404, with every detector on: the first batch is one increment (the route's
    interval, for ``error_spike``), the second two (that interval again, and the client's
    404 count, below its threshold) -- and the counters hold every record."""

    async def go() -> tuple[int, int, bytes | None, bytes | None]:
        state = CountingBackend()
        services = Services(state, WorkerIdentity("test", 0, 1, os.getpid()))
        sink = Detectors(DetectorsSettings.model_validate({"enabled": True}), services)
        for n in range(200):
            sink(record(T0 + n * 0.001, f"10.1.{n // 250}.{n % 250}", "/orders/1"))
        await sink.drain()
        first = state.increments
        for n in range(40):
            sink(record(T0 + 0.5, "192.0.2.1", f"/orders/{n}", 404))
        await sink.drain()
        second = state.increments - first
        total = await state.get(f"det:er:{_digest('api:/orders/{id}')}:{int(T0 // 60)}")
        not_found = await state.get("det:se:192.0.2.1")
        await sink.close()
        await services.close()
        return first, second, total, not_found

    assert asyncio.run(go()) == (1, 2, b"240", b"40")


def test_a_started_sink_counts_within_a_tick_without_a_drain() -> None:
    """Records handed to a started sink are counted by its own timer: three probes raise the
    scanner alert well within the 2 s the issue allows, with nobody calling ``drain``."""

    async def go(url: str) -> None:
        services = Services(MemoryBackend(), WorkerIdentity("test", 0, 1, os.getpid()))
        sink = Detectors(DetectorsSettings.model_validate({"enabled": True, "webhooks": [{"url": url}]}), services)
        sink.start()
        for path in ("/.env", "/.git/config", "/wp-admin"):
            sink(record(T0, "203.0.113.9", path))
        await asyncio.sleep(1.0)
        assert await services.state.get("det:sp:203.0.113.9") == b"3"
        await sink.close()
        await services.close()

    with WebhookServer() as hook:
        asyncio.run(go(hook.url))
        assert [(a.json()["detector"], a.json()["count"]) for a in hook.wait(1)] == [("scanner", 3)]


def test_on_the_memory_backend_the_timer_counts_without_a_task() -> None:
    """On the memory backend (which answers at once) a started sink counts its batch in the
    timer's callback itself: the probes are counted, and the loop's task factory never ran
    (the batch cost no task, so a quiet one-record batch stays cheap)."""

    async def go() -> tuple[bytes | None, int]:
        created = 0

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            nonlocal created
            created += 1
            return asyncio.Task(coro, loop=loop, **kwargs)

        services = Services(MemoryBackend(), WorkerIdentity("test", 0, 1, os.getpid()))
        sink = Detectors(DetectorsSettings.model_validate({"enabled": True}), services)
        sink.start()
        asyncio.get_running_loop().set_task_factory(factory)
        for path in ("/.env", "/.git/config"):
            sink(record(T0, "203.0.113.9", path))
        await asyncio.sleep(0.5)
        counted = await services.state.get("det:sp:203.0.113.9")
        asyncio.get_running_loop().set_task_factory(None)
        await sink.close()
        await services.close()
        return counted, created

    assert asyncio.run(go()) == (b"2", 0)


class WaitingBackend(OverMemory):
    """The memory backend, whose increments wait until the test opens its gate (as a remote
    backend makes its caller wait for the answer)."""

    immediate = False

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.asked = asyncio.Event()

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        self.asked.set()
        await self.gate.wait()
        return await super().incr(key, amount, ttl)


def test_a_backend_that_waits_counts_in_a_task_every_record_once() -> None:
    """With a backend that makes the count wait, the sink counts in a task of the loop:
    records handed over while a batch is being counted are counted after it, each once,
    and the scanner alert's threshold is reached as it would be one record at a time."""

    async def go(url: str) -> bytes | None:
        state = WaitingBackend()
        services = Services(state, WorkerIdentity("test", 0, 1, os.getpid()))
        sink = Detectors(DetectorsSettings.model_validate({"enabled": True, "webhooks": [{"url": url}]}), services)
        sink.start()
        for path in ("/.env", "/.git/config"):
            sink(record(T0, "203.0.113.9", path))
        await asyncio.wait_for(state.asked.wait(), 5.0)  # the first batch's count waits
        for path in ("/wp-admin", "/actuator"):
            sink(record(T0 + 1, "203.0.113.9", path))
        await asyncio.sleep(0.2)  # the second batch's timer finds the first still counting
        state.gate.set()
        counted = None
        for _ in range(100):
            counted = await services.state.get("det:sp:203.0.113.9")
            if counted == b"4":
                break
            await asyncio.sleep(0.05)
        await sink.close()
        await services.close()
        return counted

    with WebhookServer() as hook:
        assert asyncio.run(go(hook.url)) == b"4"
        assert [(a.json()["detector"], a.json()["count"]) for a in hook.wait(1)] == [("scanner", 3)]
