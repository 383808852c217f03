"""The supervisor: worker processes (a crash is contained and repaired; shutdown drains
in-flight requests) and hot reload (a new config applied under load with no failed request;
a broken one refused while the old one keeps serving)."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import yaml

from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess
from tests.e2e.load import Load


def worker_pids(supervisor_pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(supervisor_pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def wait_until_dead(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/status") as f:
                if any(line.startswith("State:") and "Z" in line for line in f):
                    return
        except FileNotFoundError:
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not die")


def get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_worker_crash_is_contained_and_restarted(demo_api: DemoServer) -> None:
    """Killing one worker with SIGKILL: new connections keep being served and the worker comes back."""
    everything = [{"path": "/", "prefix": True, "public": True}]  # worker supervision is tested, not auth
    cfg = {"services": [{"name": "books", "upstream": demo_api.url, "routes": everything}]}
    with GatewayProcess(cfg, workers=2) as gw:
        assert gw.proc is not None
        before = worker_pids(gw.proc.pid)
        assert len(before) == 2
        os.kill(before[0], signal.SIGKILL)
        # Connections the kernel queued on the dying worker's socket are lost with it; once
        # it is gone, the survivor takes every new connection.
        wait_until_dead(before[0])
        statuses = [get(gw.port, "/books") for _ in range(30)]
        assert statuses == [200] * 30
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = worker_pids(gw.proc.pid)
            if len(now) == 2 and before[0] not in now and gw.admin("GET", "/ready")[0] == 200:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the killed worker was not replaced")
        assert gw.admin("GET", "/health") == (200, {"status": "ok", "workers": 2, "workers_wanted": 2})
        assert "exited with -9; restarting" in gw.stderr_text()


def test_graceful_shutdown_finishes_in_flight_requests() -> None:
    """SIGTERM lets a slow in-flight request finish (200, Connection: close) before the gateway exits."""
    import asyncio

    ready = threading.Event()
    port_box: list[int] = []

    async def slow_upstream() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(1.5)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\ncontent-type: text/plain\r\n\r\nslow")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_box.append(server.sockets[0].getsockname()[1])
        ready.set()
        async with server:
            await asyncio.sleep(8)

    thread = threading.Thread(target=lambda: asyncio.run(slow_upstream()), daemon=True)
    thread.start()
    assert ready.wait(5)
    root = [{"path": "/", "public": True}]  # draining is tested, not auth
    cfg = {"services": [{"name": "s", "upstream": f"http://127.0.0.1:{port_box[0]}", "routes": root}]}
    with GatewayProcess(cfg, workers=1) as gw:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        conn.request("GET", "/")
        time.sleep(0.3)  # the request is now waiting on the upstream
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == b"slow"
        assert resp.getheader("connection") == "close"
        assert gw.proc.wait(10) == 0


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
