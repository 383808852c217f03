"""Hot reload under load: new config applied with no failed request; a broken one is refused."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request

import yaml

from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess
from tests.e2e.load import Load


def config(upstream: str, *, extra_route: bool) -> dict[str, object]:
    routes: list[dict[str, object]] = [{"path": "/books", "methods": ["GET"], "public": True}]
    if extra_route:
        routes.append({"path": "/health", "methods": ["GET"], "public": True})
    return {
        "access_log": {"path": "access.log"},
        "services": [{"name": "books", "upstream": upstream, "routes": routes}],
    }


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_reload_three_ways_under_load_without_failures(demo_api: DemoServer) -> None:
    """Admin POST /reload, SIGHUP and a file change each apply a new route while clients see only 200s."""
    with GatewayProcess(config(demo_api.url, extra_route=False), workers=2) as gw:
        data = dict(gw.config)
        assert status_of(gw.url + "/health") == 404
        with Load(gw.port, "/books", clients=4) as load:
            time.sleep(0.5)
            # 1. Admin API.
            gw.write_config({**data, **config(demo_api.url, extra_route=True)})
            status, body = gw.reload()
            assert (status, body) == (200, {"reloaded": True})
            assert wait_for(lambda: status_of(gw.url + "/health") == 200)
            time.sleep(0.3)
            # 2. SIGHUP to the supervisor, back to the smaller config.
            gw.write_config({**data, **config(demo_api.url, extra_route=False)})
            assert gw.proc is not None
            os.kill(gw.proc.pid, signal.SIGHUP)
            assert wait_for(lambda: status_of(gw.url + "/health") == 404)
            time.sleep(0.3)
            # 3. The file watcher alone.
            time.sleep(1.1)  # make sure the modification time differs
            gw.write_config({**data, **config(demo_api.url, extra_route=True)})
            assert wait_for(lambda: status_of(gw.url + "/health") == 200)
            time.sleep(0.5)
        assert load.errors == []
        assert set(load.statuses) == {200}, load.statuses
        assert load.total > 50


def test_invalid_config_is_rejected_and_old_one_keeps_serving(demo_api: DemoServer) -> None:
    """A broken new config is refused with its errors (admin 422, logged), and traffic continues."""
    with GatewayProcess(config(demo_api.url, extra_route=True), workers=1) as gw:
        data = dict(gw.config)
        broken = {**data, "services": [{"name": "books", "upstream": "ftp://nope", "routes": [{"path": "/"}]}]}
        with Load(gw.port, "/books", clients=2) as load:
            gw.write_config(broken)
            status, body = gw.reload()
            assert status == 422
            assert body["title"] == "Configuration rejected"
            assert any("services[0].upstream: expected an http:// or https:// URL" in e for e in body["errors"])
            time.sleep(1.5)  # the watcher sees the change too and must also refuse it
            assert status_of(gw.url + "/health") == 200
        assert load.errors == [] and set(load.statuses) == {200}
        assert "reload rejected" in gw.stderr_text()
        # Fixing the file is picked up again.
        gw.write_config(yaml.safe_dump({**data, **config(demo_api.url, extra_route=False)}))
        assert gw.reload() == (200, {"reloaded": True})
        assert wait_for(lambda: status_of(gw.url + "/health") == 404)
