"""The detectors' sink over records, with a real state backend (memory) and a real webhook
server: the detectors a gateway test cannot easily stage (many client IPs on one key,
consumers enumerating objects), one incident across workers, retries and Slack's format."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest

from bastion.config.detectors import DetectorsSettings
from bastion.detect import Detectors, signature
from bastion.services import Services, WorkerIdentity
from bastion.state.memory import MemoryBackend
from bastion.types import ExchangeRecord
from tests.detect.webhook import WebhookServer


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    with WebhookServer() as server:
        yield server


def record(client: str, path: str, status: int = 200, *, consumer: str | None = None,
           credential: str | None = None, route: str = "api:/orders/{id}",
           blocked_by: str | None = None) -> ExchangeRecord:
    return ExchangeRecord(
        ts=1_765_000_000.0, request_id="r", client=client, method="GET", path=path, route=route, service="api",
        status=status, bytes_in=0, bytes_out=10, seconds=0.001, consumer=consumer, credential=credential,
        blocked_by=blocked_by,
    )


def run(settings: dict[str, Any], batches: list[list[ExchangeRecord]], workers: int = 1) -> None:
    """Feed each batch to a sink (worker ``i % workers``) over one shared backend, then close them."""

    async def go() -> None:
        state = MemoryBackend()
        sinks = []
        for index in range(workers):
            services = Services(state, WorkerIdentity("test", index, workers, os.getpid()))
            sink = Detectors(DetectorsSettings.model_validate({"enabled": True, **settings}), services)
            sink.start()
            sinks.append((sink, services))
        for n, batch in enumerate(batches):
            sink = sinks[n % workers][0]
            for r in batch:
                sink(r)
            await sink.drain()
        for sink, services in sinks:
            await sink.close()
            await services.close()

    asyncio.run(go())


def test_one_key_from_many_ips_raises_token_sharing(hook: WebhookServer) -> None:
    """A credential used from a sixth client IP within the window (at most five allowed)
    raises one token-sharing alert naming the credential and the count of IPs."""
    hooks = [{"url": hook.url, "secret": "s3cret"}]
    traffic = [record(f"10.0.0.{n}", "/orders", credential="key-7f3a") for n in range(8)]
    run({"webhooks": hooks}, [traffic])
    alerts = hook.wait(1)
    assert len(alerts) == 1
    doc = alerts[0].json()
    assert doc["detector"] == "token_sharing"
    assert doc["subject"] == {"credential": "key-7f3a"}
    assert doc["count"] == 6
    assert alerts[0].headers["x-bastion-signature"] == signature("s3cret", alerts[0].body)


def test_one_key_from_few_ips_is_not_sharing(hook: WebhookServer) -> None:
    """Forty requests with one credential from five IPs (a team's machines) raise nothing."""
    traffic = [record(f"10.0.0.{n % 5}", "/orders", credential="key-7f3a") for n in range(40)]
    run({"webhooks": [{"url": hook.url}]}, [traffic])
    assert hook.wait(1, timeout=1.0) == []


def test_consumer_walking_object_ids_raises_enumeration(hook: WebhookServer) -> None:
    """A consumer asking for 40 distinct orders, 36 of them 404 or 403, raises an
    enumeration alert on that route."""
    traffic = [
        record("10.0.0.9", f"/orders/{n}", 200 if n % 10 == 0 else (404 if n % 2 else 403), consumer="c-1")
        for n in range(1000, 1040)
    ]
    run({"webhooks": [{"url": hook.url}]}, [traffic])
    alerts = hook.wait(1)
    assert [a.json()["detector"] for a in alerts] == ["enumeration"]
    assert alerts[0].json()["subject"] == {"consumer": "c-1", "route": "api:/orders/{id}"}


def test_consumer_reading_its_own_objects_is_not_enumeration(hook: WebhookServer) -> None:
    """The same volume of distinct objects, almost all found (200), raises nothing: the
    403/404 ratio tells probing from browsing."""
    traffic = [record("10.0.0.9", f"/orders/{n}", 404 if n % 10 == 0 else 200, consumer="c-1")
               for n in range(1000, 1040)]
    run({"webhooks": [{"url": hook.url}]}, [traffic])
    assert hook.wait(1, timeout=1.0) == []


def test_one_incident_across_workers_is_one_alert(hook: WebhookServer) -> None:
    """Probes from one IP seen by three workers sharing a backend count together (3 probes,
    one per worker, reach the threshold) and raise one alert, not one per worker."""
    batches = [[record("203.0.113.9", path)] for path in ("/.env", "/.git/config", "/wp-login.php", "/actuator")]
    run({"scanner": {"probe_threshold": 3}, "webhooks": [{"url": hook.url}]}, batches, workers=3)
    alerts = hook.wait(1)
    assert len(alerts) == 1
    assert alerts[0].json()["count"] == 3


def test_a_failing_webhook_gets_the_alert_on_a_retry() -> None:
    """A webhook answering 500 twice gets the alert on the third attempt (back-off retries)."""
    with WebhookServer(fail_first=2) as hook:
        batches = [[record("203.0.113.9", p) for p in ("/.env", "/.env", "/.env")]]
        run({"webhooks": [{"url": hook.url}]}, batches)
        alerts = hook.wait(1)
        assert hook.attempts == 3
        assert [a.json()["detector"] for a in alerts] == ["scanner"]


def test_slack_format(hook: WebhookServer) -> None:
    """A ``slack`` webhook receives an incoming-webhook message: ``text`` naming the
    severity, the detector and the subject."""
    batches = [[record("203.0.113.9", p) for p in ("/.env", "/.env", "/.env")]]
    run({"webhooks": [{"url": hook.url, "format": "slack"}]}, batches)
    alerts = hook.wait(1)
    body = alerts[0].json()
    assert list(body) == ["text"]
    assert body["text"].startswith("*[MEDIUM] Bastion: scanner* (ip `203.0.113.9`)")


def test_repeated_detection_blocks_raise_an_injection_campaign(hook: WebhookServer) -> None:
    """Five requests from one IP that the detection stage blocked (403) raise an injection
    alert; the same IP's 403s from another stage (access) do not count."""
    attacks = [record("198.51.100.4", f"/search?q={n}", 403, blocked_by="detection") for n in range(5)]
    denied = [record("198.51.100.5", "/admin", 403, blocked_by="access") for _ in range(10)]
    run({"webhooks": [{"url": hook.url}]}, [attacks + denied])
    alerts = hook.wait(1)
    assert [(a.json()["detector"], a.json()["subject"]) for a in alerts] == [("injection", {"ip": "198.51.100.4"})]


def test_after_a_reload_with_new_backends_the_sink_counts_in_the_new_one(hook: WebhookServer) -> None:
    """A reload that changed ``backends`` hands the sink new services (the old ones close):
    from then on it counts in the new state backend, not the closed one, and still alerts."""

    async def go() -> None:
        old_state, new_state = MemoryBackend(), MemoryBackend()
        old = Services(old_state, WorkerIdentity("test", 0, 1, os.getpid()))
        new = Services(new_state, WorkerIdentity("test", 0, 1, os.getpid()))
        settings = DetectorsSettings.model_validate({"enabled": True, "webhooks": [{"url": hook.url}]})
        sink = Detectors(settings, old)
        sink.start()
        sink(record("203.0.113.9", "/.env"))
        await sink.drain()
        sink.use(new)
        await old.close()
        for _ in range(3):
            sink(record("203.0.113.9", "/.env"))
        await sink.drain()
        assert await new_state.get("det:sp:203.0.113.9") == b"3"
        await sink.close()
        await new.close()

    asyncio.run(go())
    assert [a.json()["count"] for a in hook.wait(1)] == [3]


def test_lost_audit_records_raise_one_alert_per_minute(hook: WebhookServer) -> None:
    """Audit records dropped for a full queue raise a high-severity ``audit_loss`` alert naming
    the instance and how many were lost; a second loss within the minute is the same incident."""

    async def go() -> None:
        services = Services(MemoryBackend(), WorkerIdentity("gw-test", 0, 1, os.getpid()))
        sink = Detectors(DetectorsSettings.model_validate({"enabled": True, "webhooks": [{"url": hook.url}]}),
                         services)
        sink.start()
        sink.audit_loss(250)
        sink.audit_loss(40)
        await asyncio.sleep(0)
        await sink.close()
        await services.close()

    asyncio.run(go())
    (alert,) = [a.json() for a in hook.wait(1)]
    assert (alert["detector"], alert["severity"], alert["count"]) == ("audit_loss", "high", 250)
    assert alert["subject"] == {"instance": "gw-test"}
    assert alert["summary"].startswith("250 audit record(s) dropped on instance gw-test")


def test_the_audit_writer_reports_each_loss() -> None:
    """The audit sink tells ``on_loss`` how many records its full queue dropped since the last
    batch, once, from its writer."""
    from bastion.audit import AuditSink
    from bastion.config.audit import AuditSettings
    from bastion.proxy.metrics import Metrics

    settings = AuditSettings(enabled=True, store=False, output="-", queue_size=100, flush_interval=0.05)
    audit = AuditSink(settings, None, WorkerIdentity("gw-test", 0, 1, os.getpid()), Metrics())
    losses: list[int] = []
    audit.on_loss = losses.append
    for n in range(130):  # the writer is not started yet: 30 find the queue full
        audit(record("203.0.113.9", f"/orders/{n}"))
    audit.start()
    audit.close()
    assert losses == [30]
