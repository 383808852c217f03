"""Phantom tokens in cookies, and their end at logout: real gateways in front of a login API
that keeps its session token in a cookie.

The upstream (a threaded HTTP server in this module) answers ``POST /login`` with a 302 that
sets ``session=<HS256 JWT>`` (no HttpOnly), trusts on ``GET /me`` any cookie signed with its
key, and ends the session on ``POST /logout``. Through Bastion, the client only ever holds a
``bpt_`` phantom in that cookie, and the upstream only ever sees its own token. Run on the
memory state backend and on a real redis-server, where a logout through one instance stops
the phantom at once on another.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import yaml

from bastion.pipeline.stage import RouteInfo
from bastion.services import Services, WorkerIdentity
from bastion.stages.phantom.config import PhantomConfig
from bastion.stages.phantom.stage import PhantomStage
from bastion.state import MemoryBackend
from bastion.testing import GatewayProcess
from bastion.types import Exchange, Request, Response

from ...state.redisproc import RedisProcess, require_redis

SECRET = "the-upstream-cookie-secret-0123456789abcdef"


def upstream_jwt(sub: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "roles": ["user"], "iat": now, "exp": now + 300}, SECRET, algorithm="HS256")


class CookieApi(BaseHTTPRequestHandler):
    """``POST /login?user=NAME`` sets the session cookie; ``GET /me`` and ``POST /logout`` read it."""

    #: (path, Cookie header, Authorization header) of every call after a login.
    seen: list[tuple[str, str, str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _answer(self, status: int, body: bytes, *headers: tuple[str, str]) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if url.path == "/login":
            user = parse_qs(url.query)["user"][0]
            self._answer(302, b"", ("location", "/home"),
                         ("set-cookie", f"session={upstream_jwt(user)}; Path=/; SameSite=Lax"),
                         ("set-cookie", "theme=dark; Path=/"))
            return
        CookieApi.seen.append((url.path, self.headers.get("cookie") or "", self.headers.get("authorization") or ""))
        self._answer(200, b'{"bye": true}', ("content-type", "application/json"),
                     ("set-cookie", "session=; Max-Age=0; Path=/"))

    def do_GET(self) -> None:
        cookie = self.headers.get("cookie") or ""
        CookieApi.seen.append(("/me", cookie, self.headers.get("authorization") or ""))
        jar: SimpleCookie = SimpleCookie()
        jar.load(cookie)
        try:
            claims = jwt.decode(jar["session"].value, SECRET, algorithms=["HS256"])
        except (KeyError, jwt.PyJWTError):
            self._answer(401, b'{"error": "no session"}', ("content-type", "application/json"))
            return
        self._answer(200, f'{{"sub": "{claims["sub"]}"}}'.encode(), ("content-type", "application/json"))


@pytest.fixture(scope="module")
def cookie_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), CookieApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def config(upstream: str, state: dict[str, Any]) -> dict[str, Any]:
    """docs/identity.md's cookie example, as written but for its upstream, with a state
    backend, an access log and Bastion's API keys off (the tests send none)."""
    text = (Path(__file__).resolve().parents[3] / "docs" / "identity.md").read_text(encoding="utf-8")
    block = text.split("### In cookies, and logout", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    example = yaml.safe_load(block)
    service = example["services"][0]
    service["upstream"] = upstream
    service["policies"] = {"auth": {"api_keys": {"enabled": False}}}
    return {"access_log": {"path": "access.log"}, "backends": state, **example}


@pytest.fixture(scope="module", params=["memory", "redis"])
def state(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "memory":
        return {"state": "memory"}
    require_redis()
    redis: RedisProcess = request.getfixturevalue("redis_server")
    return {"state": "redis", "redis": {"url": redis.url}}


@pytest.fixture(scope="module")
def gateway(state: dict[str, Any], cookie_api: str) -> Iterator[GatewayProcess]:
    with GatewayProcess(config(cookie_api, state)) as gw:
        yield gw


def login(gw: GatewayProcess, user: str) -> tuple[httpx.Response, str]:
    """The login's answer and the phantom in its session cookie."""
    answer = httpx.post(f"{gw.url}/login", params={"user": user}, timeout=10)
    cookies = [c for c in answer.headers.get_list("set-cookie") if c.startswith("session=")]
    assert len(cookies) == 1, answer.headers
    return answer, cookies[0].partition(";")[0].removeprefix("session=")


def me(gw: GatewayProcess, cookie: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{gw.url}/me", headers={"cookie": cookie, **headers}, timeout=10)


def test_the_login_cookie_carries_a_phantom_with_its_attributes(gateway: GatewayProcess) -> None:
    """The login's 302 sets ``session=bpt_...`` with the upstream's attributes kept and
    ``HttpOnly`` added (not ``Secure``: the client came over plain HTTP); the other cookie
    passes as it was, and no header carries the upstream's JWT."""
    answer, phantom = login(gateway, "alice")
    assert answer.status_code == 302
    assert phantom.startswith("bpt_") and len(phantom) == 47
    cookies = answer.headers.get_list("set-cookie")
    assert f"session={phantom}; Path=/; SameSite=Lax; HttpOnly" in cookies
    assert "theme=dark; Path=/" in cookies
    assert "eyJ" not in str(answer.headers.raw) and "eyJ" not in answer.text


def test_the_phantom_cookie_is_swapped_back_and_nothing_else_gets_through(gateway: GatewayProcess) -> None:
    """``/me`` with the phantom cookie (among others) answers for alice: the upstream gets its
    own JWT in that cookie, the other cookies unchanged, never the phantom. A bearer token
    sent beside it is not forwarded. The upstream's own token in the cookie (even signed with
    its key), an unknown phantom, and no cookie are 401 and reach no upstream."""
    _, phantom = login(gateway, "alice")
    CookieApi.seen.clear()
    called = me(gateway, f"theme=dark; session={phantom}; lang=en", authorization=f"Bearer {upstream_jwt('admin')}")
    assert called.status_code == 200, called.text
    assert called.json() == {"sub": "alice"}
    ((_, cookie, authorization),) = CookieApi.seen
    assert cookie.startswith("theme=dark; session=eyJ") and cookie.endswith("; lang=en")
    assert "bpt_" not in cookie and authorization == ""
    CookieApi.seen.clear()
    for refused in (me(gateway, f"session={upstream_jwt('alice')}"), me(gateway, "session=bpt_" + "A" * 43),
                    me(gateway, "theme=dark")):
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert CookieApi.seen == []


def test_logout_ends_the_phantom_at_once(gateway: GatewayProcess) -> None:
    """A logout with the phantom cookie reaches the upstream with the upstream's token (so it
    ends its own session) and deletes the phantom: the very next call with it is 401 without
    reaching the upstream, and so is a second logout. Another session of the same user lives on."""
    _, phantom = login(gateway, "bob")
    _, other = login(gateway, "bob")
    assert me(gateway, f"session={phantom}").status_code == 200
    CookieApi.seen.clear()
    out = httpx.post(f"{gateway.url}/logout", headers={"cookie": f"session={phantom}"}, timeout=10)
    assert out.status_code == 200, out.text
    ((path, cookie, _),) = CookieApi.seen
    assert path == "/logout" and cookie.startswith("session=eyJ")
    CookieApi.seen.clear()
    assert me(gateway, f"session={phantom}").status_code == 401
    again = httpx.post(f"{gateway.url}/logout", headers={"cookie": f"session={phantom}"}, timeout=10)
    assert again.status_code == 401
    assert CookieApi.seen == []
    assert me(gateway, f"session={other}").status_code == 200


def test_logout_through_one_instance_ends_the_phantom_on_another(
    cookie_api: str, redis_server: RedisProcess
) -> None:
    """Two gateways on one Redis: a phantom issued by the first works on the second; after a
    logout through the first, the second refuses it at once (401)."""
    state = {"state": "redis", "redis": {"url": redis_server.url}}
    with GatewayProcess(config(cookie_api, state)) as one, GatewayProcess(config(cookie_api, state)) as two:
        _, phantom = login(one, "carol")
        assert me(two, f"session={phantom}").status_code == 200
        assert httpx.post(f"{one.url}/logout", headers={"cookie": f"session={phantom}"},
                          timeout=10).status_code == 200
        assert me(two, f"session={phantom}").status_code == 401


def test_over_tls_the_phantom_cookie_is_secure() -> None:
    """A login that came over TLS gets ``Secure`` added to the phantom cookie when the upstream
    left it out (never twice when it set it), and ``HttpOnly`` once."""
    stage = PhantomStage.from_config(PhantomConfig.model_validate({"issue": {"cookie": "sid"}}),
                                     RouteInfo("login", "app", "/login", frozenset({"POST"}), True))
    assert stage is not None

    async def issue(set_cookie: str) -> str:
        services = Services(MemoryBackend(), WorkerIdentity("test", 0, 1, os.getpid()))
        await stage.start(services)
        exchange = Exchange(Request("POST", "/login", "/login", "", [], scheme="https"), "req")
        response = exchange.response = Response(200, [("set-cookie", set_cookie)], b"")
        outcome = stage.on_response(exchange)
        assert inspect.isawaitable(outcome)
        assert await outcome is None
        await services.close()
        ((_, value),) = response.headers
        return value

    plain = asyncio.run(issue("sid=opaque-upstream-token; Path=/"))
    assert plain.startswith("sid=bpt_") and plain.endswith("; Path=/; HttpOnly; Secure")
    marked = asyncio.run(issue("sid=opaque-upstream-token; Secure; httponly"))
    assert marked.endswith("; Secure; httponly") and "opaque" not in marked
