"""Security headers through a real gateway on a plain (non-TLS) listener, in front of an
upstream that sends leaking headers and lets everything be cached: what the client gets,
anonymous and signed in (a JWT), with a route that overrides the authenticated Cache-Control.
(HSTS on a TLS listener: tests/e2e/test_tls.py.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest

from bastion.testing import GatewayProcess

SECRET = "a-test-signing-secret-0123456789abcdef"
ISSUER = "https://login.app.test"


class Leaky(BaseHTTPRequestHandler):
    """Every answer: 200 with a cacheable JSON body and the headers of a chatty framework."""

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response_only(200)
        for name, value in (("content-type", "application/json"), ("cache-control", "public, max-age=3600"),
                            ("server", "Apache/2.4.1"), ("x-powered-by", "PHP/5.6"), ("x-runtime", "0.0123"),
                            ("x-debug-token", "a1b2"), ("x-debug-token-link", "/_profiler/a1b2"),
                            ("x-aspnetmvc-version", "5.2")):
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Leaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = {
        "services": [{
            "name": "app", "upstream": f"http://127.0.0.1:{server.server_address[1]}",
            "policies": {"auth": {"api_keys": {"enabled": False}, "jwt": {"issuers": [
                {"issuer": ISSUER, "secret_env": "JWT_SECRET", "algorithms": ["HS256"], "audiences": ["app"]}]}}},
            "routes": [
                {"path": "/public", "methods": ["GET"], "public": True},
                {"path": "/me", "methods": ["GET"]},
                {"path": "/feed", "methods": ["GET"],
                 "policies": {"headers": {"authenticated_cache_control": "private, max-age=60"}}},
            ],
        }],
    }
    try:
        with GatewayProcess(config, env={"JWT_SECRET": SECRET}) as gw:
            yield gw
    finally:
        server.shutdown()
        server.server_close()


def bearer() -> dict[str, str]:
    now = int(time.time())
    token = jwt.encode({"iss": ISSUER, "aud": "app", "sub": "alice", "iat": now, "exp": now + 300}, SECRET,
                       algorithm="HS256")
    return {"authorization": f"Bearer {token}"}


LEAKING = ("server", "x-powered-by", "x-runtime", "x-debug-token", "x-debug-token-link", "x-aspnetmvc-version")


def test_anonymous_response_loses_leaking_headers_and_keeps_its_caching(gateway: GatewayProcess) -> None:
    """A public route's answer has none of the leaking headers, the security defaults, the
    upstream's Cache-Control (nobody is signed in), and no HSTS on a plain listener."""
    resp = httpx.get(gateway.url + "/public", timeout=10)
    assert resp.status_code == 200
    assert not set(LEAKING) & set(resp.headers)
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers.get_list("cache-control") == ["public, max-age=3600"]
    assert "strict-transport-security" not in resp.headers


def test_authenticated_response_is_no_store_unless_the_route_says_otherwise(gateway: GatewayProcess) -> None:
    """Signed in, the same upstream answer carries exactly ``Cache-Control: no-store``; on the
    route that overrides it, exactly its own value."""
    resp = httpx.get(gateway.url + "/me", headers=bearer(), timeout=10)
    assert resp.status_code == 200 and resp.headers.get_list("cache-control") == ["no-store"]
    assert not set(LEAKING) & set(resp.headers)
    resp = httpx.get(gateway.url + "/feed", headers=bearer(), timeout=10)
    assert resp.status_code == 200 and resp.headers.get_list("cache-control") == ["private, max-age=60"]
