"""CORS through a real gateway: a preflight and actual-request matrix.

Service ``app`` comes from an OpenAPI document (``GET /items`` and ``POST /items``, which
require a JWT, and no OPTIONS operation) with ``https://*.example.com`` and
``https://app.test`` allowed, credentials on; a hand-declared public ``/open`` allows any
origin without credentials; ``/plain`` has no CORS policy. The upstream records every
request it receives, so each test can prove a preflight never reached it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
import yaml

from bastion.testing import GatewayProcess

SECRET = "a-test-signing-secret-0123456789abcdef"
ISSUER = "https://login.app.test"


class Api(BaseHTTPRequestHandler):
    """200 JSON for everything, with a too-generous CORS header of its own; records requests."""

    seen: list[tuple[str, str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        Api.seen.append((self.command, self.path))
        body = b'{"ok": true}'
        self.send_response_only(200)
        self.send_header("content-type", "application/json")
        self.send_header("access-control-allow-origin", "*")
        self.send_header("x-total", "3")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_OPTIONS = _answer


API = {
    "openapi": "3.1.0", "info": {"title": "app", "version": "1"},
    "components": {"securitySchemes": {"jwt": {"type": "http", "scheme": "bearer"}}},
    "security": [{"jwt": []}],
    "paths": {"/items": {
        "get": {"operationId": "listItems", "responses": {"200": {"description": "ok"}}},
        "post": {"operationId": "addItem", "responses": {"200": {"description": "ok"}}},
    }},
}


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    upstream = f"http://127.0.0.1:{server.server_address[1]}"
    config = {
        "services": [
            {"name": "app", "upstream": upstream, "openapi": "api.yaml",
             "policies": {
                 "auth": {"api_keys": {"enabled": False}, "jwt": {"issuers": [
                     {"issuer": ISSUER, "secret_env": "JWT_SECRET", "algorithms": ["HS256"], "audiences": ["app"]}]}},
                 "cors": {"allow_origins": ["https://*.example.com", "https://app.test"], "allow_credentials": True,
                          "allow_headers": ["authorization", "content-type", "x-trace"],
                          "expose_headers": ["x-total"], "max_age": 300}}},
            {"name": "misc", "upstream": upstream, "routes": [
                {"path": "/open", "methods": ["GET"], "public": True,
                 "policies": {"cors": {"allow_origins": ["*"]}}},
                {"path": "/plain", "methods": ["GET"], "public": True},
            ]},
        ],
    }
    try:
        with GatewayProcess(config, files={"api.yaml": yaml.safe_dump(API)}, env={"JWT_SECRET": SECRET}) as gw:
            yield gw
    finally:
        server.shutdown()
        server.server_close()


def bearer() -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "app", "sub": "alice", "iat": now, "exp": now + 300}
    return "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")


def preflight(gw: GatewayProcess, path: str, origin: str, method: str, headers: str = "") -> httpx.Response:
    sent = {"origin": origin, "access-control-request-method": method}
    if headers:
        sent["access-control-request-headers"] = headers
    return httpx.request("OPTIONS", gw.url + path, headers=sent, timeout=10)


def cors_headers(resp: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.startswith("access-control-")}


@pytest.mark.parametrize(("origin", "method", "asked", "status"), [
    ("https://shop.example.com", "GET", "", 204),
    ("https://a.b.example.com", "POST", "Authorization, Content-Type", 204),
    ("https://app.test", "POST", "x-trace", 204),
    ("https://example.com", "GET", "", 403),          # the pattern's parent domain
    ("https://evil.test", "GET", "", 403),            # not listed
    ("https://app.test", "DELETE", "", 405),          # no route for it: the path's 405, no CORS
    ("https://app.test", "GET", "x-secret", 403),     # a header not allowed
])
def test_preflight_matrix(gateway: GatewayProcess, origin: str, method: str, asked: str, status: int) -> None:
    """Preflights on an OpenAPI path without an OPTIONS operation are answered by the gateway,
    before authentication (they carry no token) and never forwarded: an allowed one with the
    origin echoed, the methods, the asked headers, credentials, max-age and Vary; a refused
    one with 403 and not one CORS header. Each operation is its own route: the methods
    listed are those of the route the asked method leads to (enough for the browser); a method
    no route of the path has keeps the path's 405."""
    before = list(Api.seen)
    resp = preflight(gateway, "/items", origin, method, asked)
    assert resp.status_code == status
    if status == 204:
        assert cors_headers(resp) == {
            "access-control-allow-origin": origin,
            "access-control-allow-methods": "GET, HEAD" if method == "GET" else "POST",
            "access-control-max-age": "300",
            "access-control-allow-credentials": "true",
            **({"access-control-allow-headers": asked.lower().replace(" ", "")
                .replace(",", ", ")} if asked else {}),
        }
        assert "origin" in resp.headers["vary"]
    else:
        assert cors_headers(resp) == {} and resp.headers["content-type"] == "application/problem+json"
    assert Api.seen == before


@pytest.mark.parametrize(("origin", "allowed"), [
    ("https://shop.example.com", True), ("https://app.test", True), ("https://evil.test", False), (None, False),
])
def test_actual_request_matrix(gateway: GatewayProcess, origin: str | None, allowed: bool) -> None:
    """An actual request goes through as usual whatever its origin (CORS is the browser's to
    enforce); an allowed origin gets it echoed with credentials and the exposed headers, any
    other none of them, not even the upstream's own ``*``; every answer says ``Vary: Origin``."""
    headers = {"authorization": bearer()}
    if origin is not None:
        headers["origin"] = origin
    resp = httpx.get(gateway.url + "/items", headers=headers, timeout=10)
    assert resp.status_code == 200
    if allowed:
        assert cors_headers(resp) == {"access-control-allow-origin": origin, "access-control-allow-credentials": "true",
                                      "access-control-expose-headers": "x-total"}
    else:
        assert cors_headers(resp) == {}
    assert resp.headers.get_list("vary") == ["origin"]


def test_a_refusal_carries_cors_headers_for_an_allowed_origin(gateway: GatewayProcess) -> None:
    """Bastion's own 401 (no token) tells an allowed page's script what happened."""
    resp = httpx.get(gateway.url + "/items", headers={"origin": "https://app.test"}, timeout=10)
    assert resp.status_code == 401 and resp.headers["access-control-allow-origin"] == "https://app.test"


def test_wildcard_route_and_a_route_without_cors(gateway: GatewayProcess) -> None:
    """``allow_origins: ['*']`` without credentials answers ``*`` (and needs no Vary); a route
    without a CORS policy keeps its 405 for a preflight (its path has no OPTIONS) and adds no
    CORS header of its own."""
    resp = preflight(gateway, "/open", "https://any.test", "GET")
    assert resp.status_code == 204 and resp.headers["access-control-allow-origin"] == "*"
    resp = httpx.get(gateway.url + "/open", headers={"origin": "https://any.test"}, timeout=10)
    assert resp.headers["access-control-allow-origin"] == "*" and "vary" not in resp.headers
    resp = preflight(gateway, "/plain", "https://any.test", "GET")
    assert resp.status_code == 405 and cors_headers(resp) == {}


def test_an_options_request_that_is_no_preflight_keeps_its_405(gateway: GatewayProcess) -> None:
    """Without Access-Control-Request-Method an OPTIONS request is not a preflight: the path's
    routes do not list OPTIONS, so it is the usual 405 with Allow, and is not forwarded."""
    before = list(Api.seen)
    resp = httpx.request("OPTIONS", gateway.url + "/items", headers={"origin": "https://app.test"}, timeout=10)
    assert resp.status_code == 405 and resp.headers["allow"] == "GET, HEAD, POST"
    assert Api.seen == before
