"""The admin API's contract: its OpenAPI 3.1 document describes exactly the routes the admin
listener mounts, each with the least role it needs; and the RBAC matrix (no credentials,
viewer, operator, admin, against every endpoint) answers 401, 403 or success exactly as a table
written here by hand says, so a declaration that weakens (or changes) a role fails."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from starlette.routing import Route

from bastion.config import load_config
from bastion.control.admin import create_admin_app
from bastion.control.api.openapi import document
from bastion.control.metrics import SnapshotCollector
from bastion.demo.server import DemoServer
from bastion.store import portal
from bastion.testing import GatewayProcess
from tests.control.dashboard_client import gateway_store
from tests.control.test_api_resources import add_alert

ROLES = ("none", "viewer", "operator", "admin")
#: The least role of every operation, by hand. Changing a role in a declaration must be
#: done here too, on purpose.
EXPECTED: dict[tuple[str, str], str] = {
    ("GET", "/health"): "none",
    ("GET", "/ready"): "none",
    ("GET", "/version"): "none",
    ("GET", "/metrics"): "none",
    ("POST", "/reload"): "operator",
    ("GET", "/openapi.json"): "viewer",
    ("GET", "/api/v1/consumers"): "viewer",
    ("POST", "/api/v1/consumers"): "operator",
    ("GET", "/api/v1/consumers/{name}"): "viewer",
    ("PATCH", "/api/v1/consumers/{name}"): "operator",
    ("DELETE", "/api/v1/consumers/{name}"): "operator",
    ("GET", "/api/v1/keys"): "viewer",
    ("POST", "/api/v1/keys"): "operator",
    ("POST", "/api/v1/keys/{key_id}/revoke"): "operator",
    ("POST", "/api/v1/keys/{key_id}/rotate"): "operator",
    ("GET", "/api/v1/oauth-clients"): "viewer",
    ("POST", "/api/v1/oauth-clients"): "operator",
    ("POST", "/api/v1/oauth-clients/{client_id}/revoke"): "operator",
    ("GET", "/api/v1/routes"): "viewer",
    ("GET", "/api/v1/alerts"): "viewer",
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): "operator",
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): "operator",
    ("GET", "/api/v1/audit-log"): "viewer",
    ("GET", "/api/v1/admin-audit"): "admin",
    ("GET", "/api/v1/metrics/summary"): "viewer",
    ("GET", "/api/v1/blocks"): "viewer",
    ("DELETE", "/api/v1/blocks/{kind}/{value}"): "operator",
    ("GET", "/api/v1/admin-users"): "admin",
    ("POST", "/api/v1/admin-users"): "admin",
    ("POST", "/api/v1/admin-users/{name}/disable"): "admin",
    ("DELETE", "/api/v1/admin-users/{name}"): "admin",
    ("GET", "/api/v1/admin-tokens"): "admin",
    ("POST", "/api/v1/admin-tokens"): "admin",
    ("POST", "/api/v1/admin-tokens/{token_id}/revoke"): "admin",
    ("GET", "/api/v1/config"): "operator",
    ("POST", "/api/v1/config"): "admin",
    ("POST", "/api/v1/portal-accounts/{login}/reset-link"): "operator",
    ("POST", "/api/v1/admin-users/{name}/reset-password"): "admin",
    ("GET", "/api/v1/certificates"): "viewer",
    ("POST", "/api/v1/consumers/{name}/certificates"): "operator",
    ("POST", "/api/v1/consumers/{name}/certificates/remove"): "operator",
}
#: What an allowed role gets where it is not a success: the blocks are out of reach with the
#: memory backend of this gateway (409), which proves the role check let the caller through.
ALLOWED_STATUS = {("GET", "/api/v1/blocks"): 409, ("DELETE", "/api/v1/blocks/{kind}/{value}"): 409,
                  # and the file is the source of truth (admin.config_writable is false)
                  ("POST", "/api/v1/config"): 409}

_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


class _Sup:
    """Just enough of a supervisor to build the admin application in this process."""

    def __init__(self, config: Path) -> None:
        self.loaded = load_config(config)

    def workers_alive(self) -> tuple[int, int]:
        return 1, 1

    def ready(self) -> bool:
        return True

    def reload(self) -> list[str]:
        return []


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert method in _METHODS, f"{path}: {method} is not an HTTP method"
            yield method.upper(), path, operation


def _schemas(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON Schema a media type of the document holds."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema" and isinstance(value, dict):
                yield value
            else:
                yield from _schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schemas(value)


def test_the_document_is_openapi_3_1() -> None:
    """The document has OpenAPI 3.1's required shape: info, paths of operations with unique
    operationIds, responses for each, a bearer security scheme; every schema in it is a valid
    JSON Schema 2020-12, every $ref resolves, and every operation states its role in
    x-bastion-role and in its description."""
    doc = document()
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] and doc["info"]["version"]
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    ids: list[str] = []
    for method, path, operation in _operations(doc):
        assert path.startswith("/"), path
        ids.append(operation["operationId"])
        assert operation["responses"], f"{method} {path} has no responses"
        for status in operation["responses"]:
            assert status.isdigit() and 100 <= int(status) <= 599, (method, path, status)
        role = operation["x-bastion-role"]
        assert role in ROLES and f"**{role}**" in operation["description"], (method, path)
        for parameter in operation.get("parameters", []):
            assert parameter["in"] in ("path", "query") and "schema" in parameter
            if parameter["in"] == "path":
                assert "{" + parameter["name"] + "}" in path and parameter["required"] is True
        if role == "none":
            assert operation["security"] == []
        else:
            assert {"bearer": []} in operation["security"] and "401" in operation["responses"]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    for schema in _schemas(doc["paths"]):
        Draft202012Validator.check_schema(schema)
        for ref in _refs(schema):
            target: Any = doc
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]
            Draft202012Validator.check_schema(target)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_the_document_lists_exactly_the_mounted_routes(tmp_path: Path) -> None:
    """Every API route the admin application mounts (under /api/, the listener's own JSON
    routes and /openapi.json) is in the document with its methods, and every operation of the
    document is mounted; the roles match the hand-written table."""
    (tmp_path / "bastion.yaml").write_text(
        "services: [{name: a, upstream: 'http://127.0.0.1:9', routes: [{path: /a, methods: [GET], public: true}]}]\n")
    app = create_admin_app(_Sup(tmp_path / "bastion.yaml"), SnapshotCollector(str(tmp_path)))
    described = {(method, path) for method, path, _ in _operations(document())}
    ours = {path for _, path in EXPECTED}
    mounted = {(method, route.path) for route in app.routes if isinstance(route, Route)
               for method in (route.methods or ()) if method != "HEAD"
               if route.path.startswith("/api/") or route.path in ours}
    assert mounted == described
    roles = {(method, path): op["x-bastion-role"] for method, path, op in _operations(document())}
    assert roles == EXPECTED


# -- the matrix against a real gateway ---------------------------------------------------------------

_tags = itertools.count()
Sample = Callable[[GatewayProcess, str], tuple[str, Any]]


def _made(gw: GatewayProcess, admin: str, path: str, body: Any) -> Any:
    status, answer = gw.admin("POST", path, token=admin, json_body=body)
    assert status == 201, answer
    return answer


def _new_consumer(gw: GatewayProcess, admin: str) -> str:
    name = f"rbac-{next(_tags)}"
    _made(gw, admin, "/api/v1/consumers", {"name": name})
    return name


def _new_key(gw: GatewayProcess, admin: str) -> str:
    key_id: str = _made(gw, admin, "/api/v1/keys", {"consumer": "rbac-base"})["key"]["id"]
    return key_id


def _new_client(gw: GatewayProcess, admin: str) -> str:
    client_id = f"rbac-app-{next(_tags)}"
    _made(gw, admin, "/api/v1/oauth-clients", {"client_id": client_id, "consumer": "rbac-base"})
    return client_id


def _new_user(gw: GatewayProcess, admin: str) -> str:
    name = f"rbac-u{next(_tags)}"
    _made(gw, admin, "/api/v1/admin-users", {"name": name, "role": "viewer"})
    return name


def _new_token(gw: GatewayProcess, admin: str) -> str:
    gw.admin_token("viewer")  # its user exists
    token_id: str = _made(gw, admin, "/api/v1/admin-tokens", {"user": "test-viewer"})["token"]["id"]
    return token_id


def _new_certificate(gw: GatewayProcess, admin: str) -> str:
    san = f"svc-{next(_tags)}.internal"
    _made(gw, admin, "/api/v1/consumers/rbac-base/certificates", {"san": san})
    return san


def _new_alert(gw: GatewayProcess) -> str:
    alert_id = f"rbac-alert-{next(_tags)}"
    add_alert(gw, alert_id)
    return alert_id


#: For each operation: the path and body of a request that succeeds for a role allowed to
#: make it (making what it needs first, with the admin's token).
SAMPLES: dict[tuple[str, str], Sample] = {
    ("GET", "/health"): lambda gw, a: ("/health", None),
    ("GET", "/ready"): lambda gw, a: ("/ready", None),
    ("GET", "/version"): lambda gw, a: ("/version", None),
    ("GET", "/metrics"): lambda gw, a: ("/metrics", None),
    ("POST", "/reload"): lambda gw, a: ("/reload", None),
    ("GET", "/openapi.json"): lambda gw, a: ("/openapi.json", None),
    ("GET", "/api/v1/consumers"): lambda gw, a: ("/api/v1/consumers", None),
    ("POST", "/api/v1/consumers"): lambda gw, a: ("/api/v1/consumers", {"name": f"rbac-{next(_tags)}"}),
    ("GET", "/api/v1/consumers/{name}"): lambda gw, a: ("/api/v1/consumers/rbac-base", None),
    ("PATCH", "/api/v1/consumers/{name}"): lambda gw, a: (f"/api/v1/consumers/{_new_consumer(gw, a)}",
                                                          {"roles": ["x"]}),
    ("DELETE", "/api/v1/consumers/{name}"): lambda gw, a: (f"/api/v1/consumers/{_new_consumer(gw, a)}", None),
    ("GET", "/api/v1/keys"): lambda gw, a: ("/api/v1/keys", None),
    ("POST", "/api/v1/keys"): lambda gw, a: ("/api/v1/keys", {"consumer": "rbac-base"}),
    ("POST", "/api/v1/keys/{key_id}/revoke"): lambda gw, a: (f"/api/v1/keys/{_new_key(gw, a)}/revoke", None),
    ("POST", "/api/v1/keys/{key_id}/rotate"): lambda gw, a: (f"/api/v1/keys/{_new_key(gw, a)}/rotate", {}),
    ("GET", "/api/v1/oauth-clients"): lambda gw, a: ("/api/v1/oauth-clients", None),
    ("POST", "/api/v1/oauth-clients"): lambda gw, a: (
        "/api/v1/oauth-clients", {"client_id": f"rbac-app-{next(_tags)}", "consumer": "rbac-base"}),
    ("POST", "/api/v1/oauth-clients/{client_id}/revoke"): lambda gw, a: (
        f"/api/v1/oauth-clients/{_new_client(gw, a)}/revoke", None),
    ("GET", "/api/v1/routes"): lambda gw, a: ("/api/v1/routes", None),
    ("GET", "/api/v1/alerts"): lambda gw, a: ("/api/v1/alerts", None),
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): lambda gw, a: (
        f"/api/v1/alerts/{_new_alert(gw)}/acknowledge", None),
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): lambda gw, a: (f"/api/v1/alerts/{_new_alert(gw)}/resolve", None),
    ("GET", "/api/v1/audit-log"): lambda gw, a: ("/api/v1/audit-log", None),
    ("GET", "/api/v1/admin-audit"): lambda gw, a: ("/api/v1/admin-audit", None),
    ("GET", "/api/v1/metrics/summary"): lambda gw, a: ("/api/v1/metrics/summary", None),
    ("GET", "/api/v1/blocks"): lambda gw, a: ("/api/v1/blocks", None),
    ("DELETE", "/api/v1/blocks/{kind}/{value}"): lambda gw, a: ("/api/v1/blocks/ip/192.0.2.1", None),
    ("GET", "/api/v1/admin-users"): lambda gw, a: ("/api/v1/admin-users", None),
    ("POST", "/api/v1/admin-users"): lambda gw, a: ("/api/v1/admin-users", {"name": f"rbac-u{next(_tags)}"}),
    ("POST", "/api/v1/admin-users/{name}/disable"): lambda gw, a: (
        f"/api/v1/admin-users/{_new_user(gw, a)}/disable", None),
    ("DELETE", "/api/v1/admin-users/{name}"): lambda gw, a: (f"/api/v1/admin-users/{_new_user(gw, a)}", None),
    ("GET", "/api/v1/admin-tokens"): lambda gw, a: ("/api/v1/admin-tokens", None),
    ("POST", "/api/v1/admin-tokens"): lambda gw, a: ("/api/v1/admin-tokens", {"user": "test-viewer"}),
    ("POST", "/api/v1/admin-tokens/{token_id}/revoke"): lambda gw, a: (
        f"/api/v1/admin-tokens/{_new_token(gw, a)}/revoke", None),
    ("GET", "/api/v1/config"): lambda gw, a: ("/api/v1/config", None),
    ("POST", "/api/v1/config"): lambda gw, a: ("/api/v1/config", {"yaml": gw.config_path.read_text()}),
    ("POST", "/api/v1/portal-accounts/{login}/reset-link"): lambda gw, a: (
        "/api/v1/portal-accounts/rbac-dev/reset-link", {"expires_in": 600}),
    ("POST", "/api/v1/admin-users/{name}/reset-password"): lambda gw, a: (
        f"/api/v1/admin-users/{_new_user(gw, a)}/reset-password", None),
    ("GET", "/api/v1/certificates"): lambda gw, a: ("/api/v1/certificates", None),
    ("POST", "/api/v1/consumers/{name}/certificates"): lambda gw, a: (
        "/api/v1/consumers/rbac-base/certificates", {"san": f"svc-{next(_tags)}.internal"}),
    ("POST", "/api/v1/consumers/{name}/certificates/remove"): lambda gw, a: (
        "/api/v1/consumers/rbac-base/certificates/remove", {"san": _new_certificate(gw, a)}),
}


@pytest.fixture(scope="module")
def gw(demo_api: DemoServer) -> Iterator[GatewayProcess]:
    cfg = {"admin": {"public_metrics": True},
           "services": [{"name": "books", "upstream": demo_api.url,
                         "routes": [{"path": "/books", "methods": ["GET"], "public": True}]}]}
    with GatewayProcess(cfg) as gateway:
        _made(gateway, gateway.admin_token("admin"), "/api/v1/consumers", {"name": "rbac-base"})
        with gateway_store(gateway) as store, store.write() as session:
            portal.invite(session, store.pepper, "rbac-base", "rbac-dev", timedelta(hours=1))
        yield gateway


#: Writes that leave no admin audit entry: none (a reload records who asked and its outcome).
UNAUDITED: set[tuple[str, str]] = set()


def _newest_audit_entry(gw: GatewayProcess) -> dict[str, Any] | None:
    status, body = gw.admin("GET", "/api/v1/admin-audit?limit=1", token=gw.admin_token("admin"))
    assert status == 200, body
    return body["items"][0] if body["items"] else None


def test_every_operation_has_a_sample() -> None:
    """The matrix below covers every operation of the table (so none escapes it)."""
    assert set(SAMPLES) == set(EXPECTED)


@pytest.mark.parametrize("operation", sorted(EXPECTED), ids=lambda o: f"{o[0]} {o[1]}")
def test_rbac_matrix(gw: GatewayProcess, operation: tuple[str, str]) -> None:
    """Each role against this operation: without credentials 401 (unless it is open), a
    role below the table's 403 naming the role needed, the table's role and above success
    (or the answer of ALLOWED_STATUS, past the role check); every successful write leaves a
    new admin audit entry naming the caller, with a before or an after."""
    method, _ = operation
    needed = ROLES.index(EXPECTED[operation])
    admin = gw.admin_token("admin")
    for rank, role in enumerate(ROLES):
        path, body = SAMPLES[operation](gw, admin)
        token = None if role == "none" else gw.admin_token(role)
        newest = _newest_audit_entry(gw)
        status, answer = gw.admin(method, path, token=token, json_body=body)
        if rank >= needed and operation in ALLOWED_STATUS:
            assert status == ALLOWED_STATUS[operation], (role, status, answer)
        elif rank >= needed:
            assert 200 <= status < 300, (role, status, answer)
            if method != "GET" and operation not in UNAUDITED:
                entry = _newest_audit_entry(gw)
                assert entry is not None and entry["id"] != (newest or {}).get("id"), f"{operation} left no entry"
                assert entry["actor"].startswith(f"test-{role} (token ") and (entry["before"] or entry["after"])
        elif role == "none":
            assert status == 401 and answer["status"] == 401, (role, answer)
        else:
            assert status == 403 and EXPECTED[operation] in answer["detail"], (role, answer)


def test_metrics_summary_without_the_audit_log(gw: GatewayProcess) -> None:
    """Without the audit log in the store, GET /metrics/summary reads the workers' counters:
    source metrics, no window, and it counts the requests the gateway answered."""
    import http.client
    import time

    for _ in range(4):
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        conn.request("GET", "/books?limit=1")
        assert conn.getresponse().status == 200
        conn.close()
    viewer = gw.admin_token("viewer")
    deadline = time.monotonic() + 15
    summary = gw.admin("GET", "/api/v1/metrics/summary", token=viewer)[1]
    while summary["requests"] < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
        summary = gw.admin("GET", "/api/v1/metrics/summary", token=viewer)[1]
    assert summary["source"] == "metrics" and summary["minutes"] is None and summary["requests"] >= 4
    assert summary["error_rate"] == 0.0 and summary["latency_ms"]["p50"] is not None
