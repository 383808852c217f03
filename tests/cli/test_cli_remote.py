"""The CLI's remote mode: the store's commands, `routes`, `blocks` and `alerts` run through a
real gateway's admin API (BASTION_ADMIN_URL + BASTION_ADMIN_TOKEN, or --admin-url/--token),
with --json for scripts and the documented exit codes: 0 done, 1 failed, 2 usage, 3 auth."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess, free_port
from tests.control.test_api_resources import add_alert

BASTION = str(Path(sys.executable).with_name("bastion"))


@pytest.fixture(scope="module")
def gw(demo_api: DemoServer) -> Iterator[GatewayProcess]:
    cfg = {"audit": {"enabled": True},
           "consumers": [{"name": "declared-alice"}],
           "services": [{"name": "books", "upstream": demo_api.url,
                         "routes": [{"path": "/books", "methods": ["GET"]}]}]}
    with GatewayProcess(cfg) as gateway:
        yield gateway


def bastion(gw: GatewayProcess, *args: str, role: str | None = "operator", url: str | None = None,
            token: str | None = None) -> subprocess.CompletedProcess[str]:
    """`bastion ARGS` in an empty folder (no bastion.yaml: nothing local can be used), told the
    admin API by the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_ADMIN")}
    env["BASTION_ADMIN_URL"] = url or f"http://{gw.admin_host}:{gw.admin_port}"
    if token or role:
        env["BASTION_ADMIN_TOKEN"] = token or gw.admin_token(role or "operator")
    folder = gw.folder / "elsewhere"
    folder.mkdir(exist_ok=True)
    return subprocess.run([BASTION, *args], capture_output=True, text=True, cwd=folder, env=env, timeout=60,
                          check=False)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def _status(gw: GatewayProcess, key: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    try:
        conn.request("GET", "/books", headers={"Authorization": f"Bearer {key}"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _until(gw: GatewayProcess, key: str, wanted: int) -> int:
    deadline = time.monotonic() + 15
    status = _status(gw, key)
    while status != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
        status = _status(gw, key)
    return status


def test_consumers_and_keys_through_the_admin_api(gw: GatewayProcess) -> None:
    """consumers create/list/show/delete and keys create/list/rotate/revoke work remotely: the
    key (last line of create) is accepted by the gateway and refused once revoked; lists never
    show a key; --json gives objects scripts can read."""
    ok(bastion(gw, "consumers", "create", "cli-erin", "--roles", "a,b", "--plan", "free"))
    listed = ok(bastion(gw, "consumers", "list"))
    assert any(line.split()[:4] == ["cli-erin", "a,b", "free", "store"] for line in listed.splitlines())
    assert any(line.split()[:2] == ["declared-alice", "-"] and "config" in line for line in listed.splitlines())
    names = [json.loads(line)["name"] for line in ok(bastion(gw, "consumers", "list", "--json")).splitlines()]
    assert "cli-erin" in names and "declared-alice" in names
    assert json.loads(ok(bastion(gw, "consumers", "show", "cli-erin", "--json")))["plan"] == "free"
    assert "roles:   a,b" in ok(bastion(gw, "consumers", "show", "cli-erin"))
    key = ok(bastion(gw, "keys", "create", "cli-erin", "--scopes", "s1")).splitlines()[-1]
    assert key.startswith("bst_")
    assert _until(gw, key, 200) == 200
    keys = ok(bastion(gw, "keys", "list", "cli-erin"))
    assert key[4:12] in keys and key not in keys and "active" in keys
    made = json.loads(ok(bastion(gw, "keys", "create", "cli-erin", "--json", "--expires", "1d")))
    assert made["secret"].startswith("bst_") and made["key"]["expires_at"] is not None
    rotated = ok(bastion(gw, "keys", "rotate", made["key"]["id"], "--overlap", "0s"))
    new_key = rotated.splitlines()[-1]
    assert new_key.startswith("bst_") and new_key != made["secret"]
    assert _until(gw, new_key, 200) == 200 and _until(gw, made["secret"], 401) == 401
    assert f"revoked API key {key[4:12]}" in ok(bastion(gw, "keys", "revoke", key))
    assert _until(gw, key, 401) == 401
    assert "and its 3 API key(s)" in ok(bastion(gw, "consumers", "delete", "cli-erin"))


def test_oauth_clients_routes_alerts_and_logs(gw: GatewayProcess) -> None:
    """oauth clients create (secret last, once)/list/revoke, routes, alerts list/ack/resolve
    and logs query, remotely; blocks list reports the memory backend's limit (exit 1)."""
    made = ok(bastion(gw, "oauth", "clients", "create", "cli-app", "--consumer", "declared-alice", "--scopes", "r"))
    secret = made.splitlines()[-1]
    assert secret.startswith("bcs_")
    clients = ok(bastion(gw, "oauth", "clients", "list"))
    assert "cli-app" in clients and "consumer=declared-alice" in clients and secret not in clients
    ok(bastion(gw, "oauth", "clients", "revoke", "cli-app"))
    assert "revoked" in ok(bastion(gw, "oauth", "clients", "list"))
    routes = ok(bastion(gw, "routes"))
    assert "/books" in routes and "books" in routes
    assert json.loads(ok(bastion(gw, "routes", "--json")).splitlines()[0])["service"] == "books"
    add_alert(gw, "cli-alert")
    assert "3 scanner probes" in ok(bastion(gw, "alerts", role="viewer"))
    documents = [json.loads(line) for line in ok(bastion(gw, "alerts", "list", "--json")).splitlines()]
    assert [a["status"] for a in documents if a["id"] == "cli-alert"] == ["open"]
    assert "is acknowledged" in ok(bastion(gw, "alerts", "ack", "cli-alert"))
    assert "is resolved" in ok(bastion(gw, "alerts", "resolve", "cli-alert"))
    assert _status(gw, "bst_nope") == 401
    deadline = time.monotonic() + 15
    lines: list[dict[str, Any]] = []
    while not lines and time.monotonic() < deadline:
        lines = [json.loads(x) for x in ok(bastion(gw, "logs", "query", "--status", "401", "--json")).splitlines()]
    assert lines and all(r["status"] == 401 for r in lines)
    assert "record(s)" in ok(bastion(gw, "logs", "query", "--status", "401"))
    blocked = bastion(gw, "blocks", "list")
    assert blocked.returncode == 1 and "409" in blocked.stderr and "backends: {state: redis}" in blocked.stderr


def test_exit_codes(gw: GatewayProcess) -> None:
    """3 for a token refused (invalid: 401) or too weak (viewer writing: 403); 2 for no token
    or a URL that is not http(s); 1 for a refusal (a declared consumer, naming the file), a
    missing object or an admin API nobody answers on; every error one line, no traceback."""
    weak = bastion(gw, "consumers", "create", "cli-x", role="viewer")
    assert weak.returncode == 3 and "403" in weak.stderr and "operator" in weak.stderr
    bad = bastion(gw, "consumers", "list", token="bsa_abcdefgh_" + "A" * 43)
    assert bad.returncode == 3 and "401" in bad.stderr
    missing = bastion(gw, "consumers", "list", role=None)
    assert missing.returncode == 2 and "BASTION_ADMIN_TOKEN" in missing.stderr
    assert bastion(gw, "consumers", "list", url="ftp://127.0.0.1:1").returncode == 2
    declared = bastion(gw, "consumers", "delete", "declared-alice")
    assert declared.returncode == 1 and str(gw.config_path) in declared.stderr
    assert bastion(gw, "keys", "revoke", "nokeyid1").returncode == 1
    down = bastion(gw, "keys", "list", url=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1 and "cannot reach the admin API" in down.stderr
    for result in (weak, bad, missing, declared, down):
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
