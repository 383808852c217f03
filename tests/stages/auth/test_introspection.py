"""Opaque bearer tokens checked at an RFC 7662 introspection endpoint: a real local HTTP
server plays the OAuth server, a real gateway process (configured with
``policies.auth.introspection`` only) sits in front of the scripted upstream."""

from __future__ import annotations

import json
import threading
import time
import uuid
from base64 import b64encode
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from bastion.config import load_config
from bastion.stages.auth import auth_stage
from bastion.testing import GatewayProcess
from tests.proxy.scripted import ScriptedUpstream
from tests.proxy.util import assert_problem, one

SECRET = "introspection-secret-" + uuid.uuid4().hex
NOW = time.time()

OPENAPI = """\
openapi: 3.1.0
info: {title: shop, version: "1"}
security: [{oauth: [orders:read]}]
paths:
  /orders:
    get:
      operationId: listOrders
      responses: {"200": {description: ok}}
  /invoices:
    get:
      operationId: listInvoices
      responses: {"200": {description: ok}}
components:
  securitySchemes:
    oauth:
      type: oauth2
      flows: {clientCredentials: {tokenUrl: "https://idp.test/token", scopes: {orders:read: read}}}
"""


class Introspector:
    """An RFC 7662 endpoint over a fixed table (token -> answer); ``broken`` tokens get a 500.
    It records each call's token and Authorization header."""

    def __init__(self) -> None:
        self.table: dict[str, dict[str, Any]] = {
            "opaque-alice": {"active": True, "sub": "c-alice", "username": "alice", "scope": "orders:read",
                             "exp": int(NOW) + 3600},
            "opaque-bob": {"active": True, "sub": "c-bob", "scope": "profile", "exp": int(NOW) + 3600},
            "opaque-carol": {"active": True, "sub": "c-carol", "scope": "orders:read", "exp": int(NOW) + 3600},
            "opaque-old": {"active": True, "sub": "c-old", "scope": "orders:read", "exp": int(NOW) - 10},
        }
        self.broken = {"opaque-broken"}
        self.calls: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                form = parse_qs(self.rfile.read(int(self.headers["content-length"])).decode())
                token = form.get("token", [""])[0]
                outer.calls.append((token, self.headers.get("authorization", "")))
                if token in outer.broken:
                    self.send_response(500)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                body = json.dumps(outer.table.get(token, {"active": False})).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/introspect"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def calls_for(self, token: str) -> int:
        return sum(1 for t, _ in self.calls if t == token)


@pytest.fixture(scope="module")
def introspector() -> Iterator[Introspector]:
    server = Introspector()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def gw(upstream: ScriptedUpstream, introspector: Introspector) -> Iterator[GatewayProcess]:
    config = {
        "access_log": {"path": "access.log"},
        "policies": {"auth": {"introspection": {
            "url": introspector.url, "client_id": "gateway", "client_secret_env": "SHOP_INTROSPECTION_SECRET",
        }}},
        "services": [{"name": "shop", "upstream": {"targets": [upstream.url]}, "openapi": "shop.yaml"}],
    }
    with GatewayProcess(config, files={"shop.yaml": OPENAPI}, env={"SHOP_INTROSPECTION_SECRET": SECRET}) as process:
        yield process


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def test_an_active_token_passes_once_asked_and_then_from_the_cache(
    gw: GatewayProcess, upstream: ScriptedUpstream, introspector: Introspector
) -> None:
    """An opaque token the endpoint calls active, with the route's scope, is forwarded and
    logged with the consumer it names; the gateway authenticated itself to the endpoint
    with its client id and the secret from the environment, and asked only once for two
    requests."""
    tag = uuid.uuid4().hex
    for _ in range(2):
        resp = one(gw, "GET", f"/orders?{tag}", bearer("opaque-alice"))
        assert resp.status == 200, resp.body
    record = gw.wait_for_access_record(lambda r: r["request_id"] == resp.header("x-request-id"))
    assert record["consumer"] == "c-alice" and record["credential"].startswith("token:")
    assert "opaque-alice" not in json.dumps(record)
    assert introspector.calls_for("opaque-alice") == 1
    expected = "Basic " + b64encode(f"gateway:{SECRET}".encode()).decode()
    assert all(auth == expected for _, auth in introspector.calls)
    assert len(upstream.records(tag)) == 2


def test_routes_share_what_the_endpoint_answered(gw: GatewayProcess, introspector: Introspector) -> None:
    """The answers belong to the worker, not to one route: a token checked on one operation
    is not asked about again on another."""
    assert one(gw, "GET", "/orders", bearer("opaque-carol")).status == 200
    assert one(gw, "GET", "/invoices", bearer("opaque-carol")).status == 200
    assert introspector.calls_for("opaque-carol") == 1


@pytest.mark.parametrize(
    ("token", "status", "reason"),
    [
        ("opaque-unknown", 401, "auth.token_inactive"),
        ("opaque-old", 401, "auth.token_expired"),
        ("opaque-bob", 403, "auth.scope"),
        ("opaque-broken", 503, "auth.introspection_unavailable"),
    ],
)
def test_tokens_the_endpoint_does_not_vouch_for_are_refused(
    gw: GatewayProcess, upstream: ScriptedUpstream, token: str, status: int, reason: str
) -> None:
    """An inactive or expired token is a 401 invalid_token, an active one without the scope
    a 403, and an endpoint that fails a 503 (fail closed): never forwarded, each reason in
    the access record."""
    tag = uuid.uuid4().hex
    resp = one(gw, "GET", f"/orders?{tag}", bearer(token))
    doc = assert_problem(resp, status)
    if status == 401:
        assert resp.header("www-authenticate") == 'Bearer realm="shop", error="invalid_token"'
    record = gw.wait_for_access_record(lambda r: r["request_id"] == doc["request_id"])
    assert record["decisions"][0]["reason"] == reason
    assert not upstream.saw(tag)


def test_a_failing_endpoint_is_asked_again(gw: GatewayProcess, introspector: Introspector) -> None:
    """A failed introspection is not remembered: the next request asks again (and passes
    once the endpoint answers)."""
    before = introspector.calls_for("opaque-flaky")
    introspector.broken.add("opaque-flaky")
    assert_problem(one(gw, "GET", "/orders", bearer("opaque-flaky")), 503)
    introspector.broken.discard("opaque-flaky")
    introspector.table["opaque-flaky"] = {"active": True, "sub": "c-flaky", "scope": "orders:read",
                                          "exp": int(time.time()) + 600}
    assert one(gw, "GET", "/orders", bearer("opaque-flaky")).status == 200
    assert introspector.calls_for("opaque-flaky") == before + 2


def test_check_names_the_kinds_of_token_verified(gw: GatewayProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """`bastion check`'s summary of the route names bearer tokens checked by introspection
    (beside any other kind configured) and the scope the operation requires."""
    monkeypatch.setenv("SHOP_INTROSPECTION_SECRET", SECRET)
    route = next(r for r in load_config(gw.config_path).routes if r.id == "listOrders")
    stage = auth_stage(route.built)
    assert stage is not None and stage.summary.startswith("bearer token (")
    assert stage.summary.endswith("introspected token) with scopes orders:read")
