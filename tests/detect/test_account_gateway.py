"""Failed logins on one account from many client IPs, through a real gateway whose login
route counts tries per account (the ``login`` stage), in front of a real login API: the
account-brute-force detector raises one alert at a local webhook server, naming the account
by the login stage's hash (never the user name)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import httpx
import pytest

from bastion.testing import GatewayProcess
from tests.detect.webhook import WebhookServer
from tests.stages.login.test_login_gateway import LoginApi


@pytest.fixture
def login_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), LoginApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_password_spraying_one_account_from_many_ips_raises_one_alert(login_api: str) -> None:
    """Eight wrong passwords for alice from four client IPs (forwarded by a trusted proxy)
    raise one account_brute_force alert with the count at the threshold (6, from 3 IPs at
    least); the alert names a hash, not "alice"; bob's one mistake raises nothing."""
    with WebhookServer() as hook:
        config = {
            "listen": {"host": "127.0.0.1", "trusted_proxies": ["127.0.0.1/32"]},
            "services": [{
                "name": "app",
                "upstream": login_api,
                "routes": [{"path": "/login", "methods": ["POST"], "public": True,
                            "policies": {"login": {"account": "body:/username", "max_failures": 100}}}],
            }],
            "detectors": {
                "enabled": True,
                "brute_force": {"enabled": False},
                "account_brute_force": {"threshold": 6, "min_ips": 3},
                "webhooks": [{"url": hook.url}],
            },
        }
        with GatewayProcess(config) as gw, httpx.Client(base_url=gw.url, timeout=10) as client:
            for n in range(8):
                answer = client.post("/login", json={"username": "Alice", "password": f"guess-{n}"},
                                     headers={"X-Forwarded-For": f"198.51.100.{n % 4}"})
                assert answer.status_code == 401
            client.post("/login", json={"username": "bob", "password": "typo"},
                        headers={"X-Forwarded-For": "192.0.2.1"})
            alerts = hook.wait(1)
            time.sleep(0.5)  # anything that would wrongly follow has had time to arrive
        documents = [a.json() for a in hook.received]
    assert len(documents) == 1
    doc = documents[0]
    assert (doc["detector"], doc["count"]) == ("account_brute_force", 6)
    assert list(doc["subject"]) == ["account"] and len(doc["subject"]["account"]) == 32
    assert "alice" not in alerts[0].body.decode().lower()
