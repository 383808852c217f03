"""`bastion discover` after real traffic through a real gateway with the audit log on:
calls of paths and methods the OpenAPI document does not declare (refused 404/405) are
listed as endpoints with their counts, the declared operations nobody called are listed as
such, and `--openapi` writes a draft document declaring what was found."""

from __future__ import annotations

import http.client
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bastion.demo.app import openapi_path
from bastion.demo.server import DemoServer
from bastion.testing import GatewayProcess, free_port

BASTION = str(Path(sys.executable).with_name("bastion"))


@pytest.fixture(scope="module")
def gw() -> Iterator[GatewayProcess]:
    """The demo bookstore behind a gateway on its OpenAPI document, the audit log in the store."""
    port = free_port()
    config = {
        "access_log": {"enabled": False},
        "audit": {"enabled": True},
        "services": [{"name": "books", "upstream": f"http://127.0.0.1:{port}", "openapi": str(openapi_path())}],
    }
    with DemoServer("127.0.0.1", port), GatewayProcess(config) as process:
        yield process


def call(gw: GatewayProcess, method: str, path: str) -> int:
    conn = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
    try:
        conn.request(method, path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def stored_records(folder: Path) -> int:
    try:
        with sqlite3.connect(folder / "bastion.db", timeout=10) as conn:
            return int(conn.execute("SELECT count(*) FROM audit_records").fetchone()[0])
    except sqlite3.OperationalError:  # not created or not migrated yet
        return 0


def test_discover_lists_undeclared_and_unused_endpoints(gw: GatewayProcess, tmp_path: Path) -> None:
    """Three calls of an old API version (/v1/books/<n>, two ids) and a DELETE of /books are
    refused and then listed: ``GET /v1/books/{id}`` with 3 requests (404) and ``DELETE /books``
    (405); listBooks, which was called, is not among the routes never called, getUser is.
    The draft document declares both endpoints."""
    calls = [("GET", "/v1/books/12"), ("GET", "/v1/books/13"), ("GET", "/v1/books/12"), ("DELETE", "/books"),
             ("GET", "/books")]
    statuses = [call(gw, method, path) for method, path in calls]
    assert statuses[:4] == [404, 404, 404, 405]
    deadline = time.monotonic() + 15
    while stored_records(gw.folder) < len(calls) and time.monotonic() < deadline:
        time.sleep(0.1)
    draft = tmp_path / "draft.yaml"
    result = subprocess.run([BASTION, "discover", "--json", "--openapi", str(draft), "-c", str(gw.config_path)],
                            capture_output=True, text=True, timeout=60, cwd=gw.folder, check=False)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    endpoints = {(e["method"], e["path"]): e for e in found["undeclared"]}
    assert {("GET", "/v1/books/{id}"), ("DELETE", "/books")} <= set(endpoints)  # the other test's may be there
    old_version = endpoints["GET", "/v1/books/{id}"]
    assert (old_version["requests"], old_version["statuses"]) == (3, [404])
    assert endpoints["DELETE", "/books"]["statuses"] == [405]
    never = {u["route"] for u in found["unused"]}
    assert "listBooks" not in never and "getUser" in never
    document = yaml.safe_load(draft.read_text())
    assert {"/v1/books/{id}", "/books"} <= set(document["paths"])
    assert set(document["paths"]["/books"]) == {"delete"}
    assert f"wrote {len(endpoints)} endpoint(s)" in result.stderr


def test_discover_prints_tables(gw: GatewayProcess) -> None:
    """Without --json the same findings are two aligned tables, each with its count."""
    call(gw, "GET", "/v2/shelves/41")
    deadline = time.monotonic() + 15
    while True:
        result = subprocess.run([BASTION, "discover", "-c", str(gw.config_path)], capture_output=True, text=True,
                                timeout=60, cwd=gw.folder, check=False)
        assert result.returncode == 0, result.stderr
        if "/v2/shelves/{id}" in result.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["method", "path", "requests", "clients", "status", "first", "seen", "last", "seen"]
    assert any(line.split()[:5] == ["GET", "/v2/shelves/{id}", "1", "1", "404"] for line in lines)
    assert any(line.endswith("route(s) not called") for line in lines)


def test_discovery_stage_observes_parameters_and_sensitive_data(tmp_path: Path) -> None:
    """Behind a catch-all route with the ``discovery`` stage (every response sampled), the
    echoing upstream returns what the client sent: ``bastion discover`` then lists
    ``GET /customers/{id}`` with its query parameters typed from the values seen (page an
    integer, active a boolean, email a string) and the e-mail address its responses carried,
    and ``GET /orders`` returning a card number; ``--export`` (the issue's spelling of
    ``--openapi``) writes them into a draft that loads as a service's OpenAPI document."""
    from bastion.config.loader import load_config
    from tests.proxy.scripted import ScriptedUpstream

    with ScriptedUpstream() as upstream:
        config = {
            "access_log": {"enabled": False},
            "audit": {"enabled": True},
            "services": [{"name": "legacy", "upstream": upstream.url, "policies": {"discovery": {"sample": 1.0}},
                          "routes": [{"path": "/", "prefix": True, "public": True}]}],
        }
        with GatewayProcess(config) as gw:
            calls = ["/customers/12?page=2&email=alice@example.com", "/customers/13?page=3&active=true",
                     "/orders?card=4111111111111111"]
            assert [call(gw, "GET", path) for path in calls] == [200, 200, 200]
            deadline = time.monotonic() + 15
            while stored_records(gw.folder) < len(calls) and time.monotonic() < deadline:
                time.sleep(0.1)
            draft = tmp_path / "draft.yaml"
            result = subprocess.run([BASTION, "discover", "--json", "--export", str(draft), "-c", str(gw.config_path)],
                                    capture_output=True, text=True, timeout=60, cwd=gw.folder, check=False)
            tables = subprocess.run([BASTION, "discover", "-c", str(gw.config_path)], capture_output=True, text=True,
                                    timeout=60, cwd=gw.folder, check=False)
    assert result.returncode == 0, result.stderr
    seen = {(o["method"], o["path"]): o for o in json.loads(result.stdout)["observed"]}
    customers = seen["GET", "/customers/{id}"]
    assert (customers["requests"], customers["sampled"]) == (2, 2)
    assert customers["query"] == {"active": "boolean", "email": "string", "page": "integer"}
    assert "email" in customers["returns"] and "card" not in customers["returns"]
    assert "card" in seen["GET", "/orders"]["returns"]
    assert any(line.startswith("GET") and "/customers/{id}" in line and "page:integer" in line and "email" in line
               for line in tables.stdout.splitlines()), tables.stdout

    document = yaml.safe_load(draft.read_text())
    operation = document["paths"]["/customers/{id}"]["get"]
    assert "email" in operation["x-sensitive-data"]
    assert {(p["name"], p["in"], p["schema"]["type"]) for p in operation["parameters"]} == {
        ("id", "path", "integer"), ("page", "query", "integer"), ("active", "query", "boolean"),
        ("email", "query", "string"),
    }
    (tmp_path / "adopt.yaml").write_text(
        f"services: [{{name: adopted, upstream: 'http://127.0.0.1:9', openapi: {draft}}}]\n")
    routes = {r.path for r in load_config(tmp_path / "adopt.yaml").routes}
    assert {"/customers/{id}", "/orders"} <= routes
