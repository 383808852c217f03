"""The detectors' Prometheus metrics, counted by a real sink over a real state backend:
alerts by detector and severity, blocks placed and still active, and records the detectors
could not count because the state backend was down."""

from __future__ import annotations

import asyncio
import os

from bastion.config.detectors import DetectorsSettings
from bastion.detect import Detectors
from bastion.proxy.metrics import Metrics
from bastion.services import Services, WorkerIdentity
from bastion.state.memory import MemoryBackend
from bastion.state.redis import RedisBackend
from bastion.testing import free_port
from tests.detect.test_sink import record

PROBES = ("/.env", "/.git/config", "/wp-login.php")


def test_alerts_and_blocks_are_counted_and_active_blocks_expire() -> None:
    """A scanner with ``action: block`` and a brute force alert: each alert is counted under
    its detector and severity, the scanner's block under ``(scanner, ip)``; the active-blocks
    gauge is 1 while the block lasts and 0 once its TTL is over."""
    metrics = Metrics()

    async def go() -> tuple[float, float]:
        services = Services(MemoryBackend(), WorkerIdentity("test", 0, 1, os.getpid()))
        settings = DetectorsSettings.model_validate({
            "enabled": True,
            "scanner": {"probe_threshold": 3, "action": "block", "block_ttl": "1s"},
            "brute_force": {"threshold": 2},
        })
        sink = Detectors(settings, services, metrics)
        for path in PROBES:
            sink(record("203.0.113.9", path))
        for _ in range(2):
            sink(record("198.51.100.7", "/login", 401))
        await sink.drain()
        during = metrics.gauges["bastion_blocks_active"]
        await asyncio.sleep(1.1)  # the block's TTL is over
        await sink.drain()
        after = metrics.gauges["bastion_blocks_active"]
        await sink.close()
        await services.close()
        return during, after

    during, after = asyncio.run(go())
    assert metrics.counters["bastion_alerts"] == {("scanner", "medium"): 1.0, ("brute_force", "high"): 1.0}
    assert metrics.counters["bastion_detector_blocks"] == {("scanner", "ip"): 1.0}
    assert (during, after) == (1.0, 0.0)


def test_an_unreachable_state_backend_is_counted_not_silent() -> None:
    """With the state backend down (Redis on a port nothing listens on), every record the
    detectors could not count is counted in ``bastion_detector_errors``, and no alert is raised."""
    metrics = Metrics()

    async def go() -> None:
        state = RedisBackend(f"redis://127.0.0.1:{free_port()}", timeout=0.5)
        services = Services(state, WorkerIdentity("test", 0, 1, os.getpid()))
        sink = Detectors(DetectorsSettings.model_validate({"enabled": True}), services, metrics)
        for path in PROBES:
            sink(record("203.0.113.9", path))
        await sink.drain()
        await sink.close()
        await services.close()

    asyncio.run(go())
    assert metrics.counters["bastion_detector_errors"] == {(): 3.0}
    assert metrics.counters["bastion_alerts"] == {}
