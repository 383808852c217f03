"""Phantom tokens end to end: a real gateway process in front of a real login API.

The upstream (a small threaded HTTP server in this module) issues JWTs signed with an HS256
secret on ``POST /login`` and trusts, on ``GET /me``, any token signed with that secret: the
kind of API phantom tokens are for. Through Bastion, the client gets a ``bpt_...`` token and
never the JWT; Bastion swaps it back on the way in; a JWT forged with the upstream's own key
is refused, as is an unknown or expired phantom, and a state backend that is down fails
closed. Run on the memory state backend and on a real redis-server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from bastion.testing import GatewayProcess

from ...state.redisproc import RedisProcess, require_redis

SECRET = "the-upstream-signing-secret-0123456789abcdef"
ISSUER = "https://login.app.test"
#: The upstream's key, also given to Bastion (for ``/profile``), to show that ``/me`` refuses
#: tokens Bastion could verify: phantom tokens only.
ENV = {"UPSTREAM_SECRET": SECRET}


def upstream_jwt(sub: str, lifetime: float) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "app", "sub": sub, "roles": ["user"], "scope": "profile:read", "iat": now,
              "exp": int(now + lifetime)}
    return jwt.encode(claims, SECRET, algorithm="HS256")


class LoginApi(BaseHTTPRequestHandler):
    """``POST /login?user=NAME[&lifetime=S]`` issues a JWT; ``GET /me`` answers for a valid one."""

    #: Every Authorization header ``/me`` received (what the upstream really saw).
    seen: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _json(self, status: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path != "/login" or "user" not in query:
            self._json(400, {"error": "bad login"})
            return
        token = upstream_jwt(query["user"], float(query.get("lifetime", "300")))
        self._json(200, {"access_token": token, "token_type": "Bearer", "user": query["user"]})

    def do_GET(self) -> None:
        auth = self.headers.get("authorization") or ""
        LoginApi.seen.append(auth)
        try:
            claims = jwt.decode(auth.removeprefix("Bearer "), SECRET, algorithms=["HS256"], audience="app")
        except jwt.PyJWTError:
            self._json(401, {"error": "invalid token"})
            return
        self._json(200, {"sub": claims["sub"]})


@pytest.fixture(scope="module")
def login_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), LoginApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def config(upstream: str, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "access_log": {"path": "access.log"},
        "backends": state,
        "services": [{
            "name": "app",
            "upstream": upstream,
            "policies": {"auth": {"api_keys": {"enabled": False}, "jwt": {"issuers": [
                {"issuer": ISSUER, "secret_env": "UPSTREAM_SECRET", "algorithms": ["HS256"], "audiences": ["app"]},
            ]}}},
            "routes": [
                {"path": "/login", "methods": ["POST"], "public": True,
                 "policies": {"phantom": {"issue": {"token_field": "access_token"}}}},
                {"path": "/me", "methods": ["GET"],
                 "policies": {"auth": {"phantom_tokens": True}, "access": {"roles": ["user"]}}},
                {"path": "/admin", "methods": ["GET"],
                 "policies": {"auth": {"phantom_tokens": True}, "access": {"roles": ["admin"]}}},
                # The same upstream token verified as a JWT: the contrast for /me.
                {"path": "/profile", "methods": ["GET"]},
            ],
        }],
    }


@pytest.fixture(scope="module", params=["memory", "redis"])
def gateway(request: pytest.FixtureRequest, login_api: str) -> Iterator[GatewayProcess]:
    """One gateway per state backend: memory, and a real redis-server of the session."""
    state: dict[str, Any] = {"state": "memory"}
    if request.param == "redis":
        require_redis()
        redis: RedisProcess = request.getfixturevalue("redis_server")
        state = {"state": "redis", "redis": {"url": redis.url}}
    with GatewayProcess(config(login_api, state), env=ENV) as gw:
        yield gw


def login(gw: GatewayProcess, user: str, lifetime: float = 300) -> httpx.Response:
    return httpx.post(f"{gw.url}/login", params={"user": user, "lifetime": str(lifetime)}, timeout=10)


def me(gw: GatewayProcess, token: str) -> httpx.Response:
    return httpx.get(f"{gw.url}/me", headers={"authorization": f"Bearer {token}"}, timeout=10)


def test_login_returns_a_phantom_and_the_upstream_sees_its_jwt(gateway: GatewayProcess) -> None:
    """The login answer through Bastion carries a ``bpt_`` token (256 bits, base64url), not
    the upstream's JWT, and nothing else of the body changes; calling ``/me`` with it works,
    the upstream receiving the real JWT (never the phantom), and the access record names
    the consumer from the JWT's claims."""
    answer = login(gateway, "alice")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    phantom = body["access_token"]
    assert phantom.startswith("bpt_") and len(phantom) == 4 + 43
    assert "." not in phantom
    assert (body["token_type"], body["user"]) == ("Bearer", "alice")
    assert int(answer.headers["content-length"]) == len(answer.content)
    LoginApi.seen.clear()
    called = me(gateway, phantom)
    assert called.status_code == 200, called.text
    assert called.json() == {"sub": "alice"}
    (forwarded,) = LoginApi.seen
    assert forwarded.startswith("Bearer ey") and "bpt_" not in forwarded
    claims = jwt.decode(forwarded.removeprefix("Bearer "), SECRET, algorithms=["HS256"], audience="app")
    assert claims["sub"] == "alice"
    record = gateway.wait_for_access_record(lambda r: r.get("path") == "/me" and r.get("status") == 200)
    assert record.get("consumer") == "alice"
    assert phantom not in json.dumps(record)


def test_authorization_knows_the_caller_from_the_phantom(gateway: GatewayProcess) -> None:
    """The roles the upstream's JWT named reach the access stage: ``/me`` (role ``user``)
    lets alice's phantom through, ``/admin`` (role ``admin``) refuses it 403 without
    calling the upstream."""
    phantom = login(gateway, "alice").json()["access_token"]
    assert me(gateway, phantom).status_code == 200
    LoginApi.seen.clear()
    refused = httpx.get(f"{gateway.url}/admin", headers={"authorization": f"Bearer {phantom}"}, timeout=10)
    assert refused.status_code == 403, refused.text
    assert LoginApi.seen == []


def test_the_upstream_token_and_a_forged_one_are_refused(gateway: GatewayProcess) -> None:
    """A JWT signed with the upstream's own key (forged for ``admin``), which ``/profile``
    (the route's JWT settings, without ``phantom_tokens``) accepts, is refused on ``/me``
    with 401 ``invalid_token`` and never reaches the upstream; so is an unknown phantom."""
    forged = upstream_jwt("admin", 300)
    assert httpx.get(f"{gateway.url}/profile", headers={"authorization": f"Bearer {forged}"},
                     timeout=10).status_code == 200
    LoginApi.seen.clear()
    for token in (forged, "bpt_" + "A" * 43):
        refused = me(gateway, token)
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert LoginApi.seen == []
    assert httpx.get(f"{gateway.url}/me", timeout=10).status_code == 401


def test_an_expired_phantom_is_refused(gateway: GatewayProcess) -> None:
    """A phantom lives as long as the upstream's JWT (its ``exp``): once that has passed, the
    phantom is refused with 401 and the upstream is not called."""
    phantom = login(gateway, "bob", lifetime=1).json()["access_token"]
    assert phantom.startswith("bpt_")
    time.sleep(2.2)  # past exp (whole seconds) on the wall clock
    LoginApi.seen.clear()
    refused = me(gateway, phantom)
    assert refused.status_code == 401, refused.text
    assert LoginApi.seen == []


def test_a_failed_login_passes_unchanged(gateway: GatewayProcess) -> None:
    """An unsuccessful login (no token in it) reaches the client as the upstream sent it."""
    answer = httpx.post(f"{gateway.url}/login", timeout=10)
    assert answer.status_code == 400
    assert answer.json() == {"error": "bad login"}


def test_state_backend_down_fails_closed(login_api: str) -> None:
    """With the state backend gone, a login is answered 503 (the upstream's token is not
    handed out) and a phantom issued before is refused with 503, never forwarded."""
    require_redis()
    redis = RedisProcess().start()
    try:
        with GatewayProcess(config(login_api, {"state": "redis", "redis": {"url": redis.url}}), env=ENV) as gw:
            phantom = login(gw, "carol").json()["access_token"]
            assert me(gw, phantom).status_code == 200
            redis.kill()
            down = login(gw, "carol")
            assert down.status_code == 503, down.text
            assert "eyJ" not in down.text
            LoginApi.seen.clear()
            refused = me(gw, phantom)
            assert refused.status_code == 503, refused.text
            assert LoginApi.seen == []
    finally:
        redis.stop()
