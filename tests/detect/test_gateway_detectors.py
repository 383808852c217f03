"""The detectors in a real gateway in front of a real (scripted) upstream: attack traffic
replayed over sockets raises one signed alert per incident at a local webhook server;
benign traffic of the same volume raises none.

The gateway trusts 127.0.0.1 as a proxy, so each test speaks for client IPs of its own
(``X-Forwarded-For``) and the shared gateway's counters do not mix between tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.testing import GatewayProcess, parse_one_response, raw_request
from tests.detect.webhook import Received, WebhookServer
from tests.proxy.scripted import ScriptedUpstream

SECRET = "test-alert-secret-5d1c"


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def hook() -> Iterator[WebhookServer]:
    with WebhookServer() as server:
        yield server


@pytest.fixture(scope="module")
def gw(upstream: ScriptedUpstream, hook: WebhookServer) -> Iterator[GatewayProcess]:
    """A public catch-all and a private ``/account`` that nothing can sign in to (401), with
    the detectors on: small thresholds, one webhook signed with ``${ALERT_SECRET}``."""
    config = {
        "listen": {"host": "127.0.0.1", "trusted_proxies": ["127.0.0.1/32"]},
        "services": [{
            "name": "api",
            "upstream": {"targets": [upstream.url]},
            "routes": [
                {"path": "/account", "prefix": True},
                {"path": "/", "prefix": True, "public": True},
            ],
        }],
        "detectors": {
            "enabled": True,
            "brute_force": {"threshold": 5, "window": "60s"},
            "scanner": {"probe_threshold": 3, "error_threshold": 10},
            "webhooks": [{"url": hook.url, "secret": "${ALERT_SECRET}"}],
        },
    }
    with GatewayProcess(config, env={"ALERT_SECRET": SECRET}) as process:
        yield process


def send(gw: GatewayProcess, ip: str, target: str, agent: str = "shop-app/2.1", key: str | None = None) -> int:
    """One GET of ``target`` as client ``ip`` (with API key ``key``); the status it got."""
    credential = f"X-API-Key: {key}\r\n" if key is not None else ""
    data = (f"GET {target} HTTP/1.1\r\nHost: shop\r\nUser-Agent: {agent}\r\nX-Forwarded-For: {ip}\r\n"
            f"{credential}Connection: close\r\n\r\n").encode()
    return parse_one_response(raw_request(gw.host, gw.port, data))[0].status


def alerts_for(hook: WebhookServer, ip: str, wait: float = 5.0) -> list[Received]:
    """The alerts about ``ip``, after waiting up to ``wait`` seconds for the first."""
    deadline = time.monotonic() + wait
    while True:
        found = [r for r in hook.received if r.json().get("subject", {}).get("ip") == ip]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def assert_signed(alert: Received) -> None:
    expected = "sha256=" + hmac.new(SECRET.encode(), alert.body, hashlib.sha256).hexdigest()
    assert alert.headers["x-bastion-signature"] == expected
    assert alert.headers["content-type"] == "application/json"


def test_probe_paths_raise_one_signed_scanner_alert(gw: GatewayProcess, hook: WebhookServer) -> None:
    """Six probes of secret and admin paths from one IP raise exactly one scanner alert (the
    incident, not one per request), signed with the configured secret, naming the IP, the
    count at the threshold and the time span."""
    ip = "203.0.113.10"
    for target in ("/.env", "/.git/config", "/wp-admin/", "/actuator/env", "/.aws/credentials", "/.env.bak"):
        send(gw, ip, target)
    alerts = alerts_for(hook, ip)
    time.sleep(0.5)  # anything that would wrongly follow has had time to arrive
    alerts = alerts_for(hook, ip)
    assert len(alerts) == 1
    assert_signed(alerts[0])
    doc = alerts[0].json()
    assert doc["type"] == "bastion.alert"
    assert doc["detector"] == "scanner"
    assert doc["severity"] == "medium"
    assert doc["action"] == "alert"
    assert doc["subject"] == {"ip": ip}
    assert doc["count"] == 3
    assert doc["window_seconds"] == 60.0
    assert doc["first_seen"] <= doc["last_seen"]


def test_scanner_user_agent_is_a_probe(gw: GatewayProcess, hook: WebhookServer) -> None:
    """Ordinary paths asked by a known scanner's User-Agent (sqlmap) count as probes."""
    ip = "203.0.113.11"
    for n in range(3):
        send(gw, ip, f"/products?id={n}", agent="sqlmap/1.7.2#stable (https://sqlmap.org)")
    alerts = alerts_for(hook, ip)
    assert [a.json()["detector"] for a in alerts] == ["scanner"]


def test_not_found_spike_raises_a_scanner_alert(gw: GatewayProcess, hook: WebhookServer) -> None:
    """Ten 404s to one IP (a path-guessing scan) raise a scanner alert."""
    ip = "203.0.113.12"
    for n in range(10):
        assert send(gw, ip, f"/status/404?guess={n}") == 404
    alerts = alerts_for(hook, ip)
    assert len(alerts) == 1
    assert alerts[0].json()["summary"].startswith("10 answers 404/405")


def test_failed_logins_raise_a_brute_force_alert(gw: GatewayProcess, hook: WebhookServer) -> None:
    """Five 401s from one IP on a private route raise one high-severity brute force alert."""
    ip = "198.51.100.7"
    for _ in range(8):
        assert send(gw, ip, "/account/login") == 401
    alerts = alerts_for(hook, ip)
    time.sleep(0.5)
    alerts = alerts_for(hook, ip)
    assert len(alerts) == 1
    assert_signed(alerts[0])
    doc = alerts[0].json()
    assert (doc["detector"], doc["severity"], doc["count"]) == ("brute_force", "high", 5)


def test_benign_traffic_of_similar_volume_raises_nothing(gw: GatewayProcess, hook: WebhookServer) -> None:
    """Twenty ordinary requests from one IP (browsing, a couple of 401s, one 404) raise no
    alert: every detector stays below its threshold."""
    ip = "192.0.2.50"
    for n in range(16):
        assert send(gw, ip, f"/products/{n}") == 200
    for _ in range(2):
        send(gw, ip, "/account/orders")
    send(gw, ip, "/status/404")
    send(gw, ip, "/environment")  # starts like no probe path: /.env is not /environment
    # An alert about the attacks above arrives within 2 s: one about this IP would have too.
    assert alerts_for(hook, ip, wait=2.5) == []


def test_bastion_alerts_lists_the_history(gw: GatewayProcess, hook: WebhookServer) -> None:
    """Every alert the webhook received is kept in the store; `bastion alerts --json` (on the
    gateway's configuration) lists it with the same id, detector, subject and count."""
    ip = "203.0.113.20"
    for target in ("/.env", "/.env", "/.env"):
        send(gw, ip, target)
    (sent,) = alerts_for(hook, ip)
    bastion = str(Path(sys.executable).with_name("bastion"))
    deadline = time.monotonic() + 10
    while True:
        result = subprocess.run([bastion, "alerts", "--json", "-c", str(gw.config_path)], capture_output=True,
                                text=True, timeout=60, cwd=gw.folder, env={**os.environ, "ALERT_SECRET": SECRET})
        assert result.returncode == 0, result.stderr
        listed = {d["id"]: d for d in map(json.loads, result.stdout.splitlines())}
        if sent.json()["id"] in listed or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    kept = listed[sent.json()["id"]]
    assert (kept["detector"], kept["subject"], kept["count"], kept["action"]) == ("scanner", {"ip": ip}, 3, "alert")
    assert kept["first_seen"] == sent.json()["first_seen"] and kept["last_seen"] == sent.json()["last_seen"]


def test_alerts_are_counted_in_the_metrics_by_detector_and_severity(gw: GatewayProcess, hook: WebhookServer) -> None:
    """Once a scanner alert went out, the admin API's /metrics counts it under its detector
    and severity (summed from the worker's snapshot)."""
    ip = "203.0.113.30"
    for target in ("/.env", "/.env", "/.env"):
        send(gw, ip, target)
    assert alerts_for(hook, ip)
    deadline = time.monotonic() + 5
    while True:
        text = str(gw.admin("GET", "/metrics")[1])
        counted = [line for line in text.splitlines() if line.startswith(
            'bastion_alerts_total{detector="scanner",severity="medium"}')]
        if counted or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 1
