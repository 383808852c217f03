"""``bastion serve`` with a state backend: workers start with it, and never log its password."""

from __future__ import annotations

import http.client
import time

from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess, free_port


def test_workers_start_and_serve_while_redis_is_unreachable_without_logging_its_password() -> None:
    """Two workers on ``state: redis`` whose server does not answer still start and serve
    (the shipped stages keep no state), and each warns that stages keeping state will fail
    -- naming the server with its password masked, never the password itself."""
    with DemoServer() as api:
        config = {
            "backends": {"state": "redis",
                         "redis": {"url": f"redis://:${{REDIS_PASSWORD}}@127.0.0.1:{free_port()}/0", "timeout": 0.2}},
            "services": [{"name": "api", "upstream": api.url,
                          "routes": [{"path": "/", "prefix": True, "public": True}]}],
        }
        with GatewayProcess(config, workers=2, env={"REDIS_PASSWORD": "pw-hunter2"}) as gw:
            conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
            conn.request("GET", "/health")
            assert conn.getresponse().status == 200
            conn.close()
            deadline = time.monotonic() + 10
            while gw.stderr_text().count("stages that keep state fail: 503") < 2:
                assert time.monotonic() < deadline, gw.stderr_text()
                time.sleep(0.05)
            log = gw.stderr_text()
    assert "redis at redis://:***@127.0.0.1:" in log
    assert "pw-hunter2" not in log
