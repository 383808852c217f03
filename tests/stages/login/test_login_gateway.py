"""Account lockout end to end: real gateways in front of a small login API.

The upstream (a threaded HTTP server in this module) answers ``POST /login`` with 200 for
the right password and 401 otherwise, and counts the tries it saw. Guesses come from many
client addresses (``X-Forwarded-For`` through a trusted loopback proxy), so only a count
per account can stop them. Run on the memory state backend and on a real redis-server;
two instances sharing one Redis show the count is exact across instances.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bastion.testing import GatewayProcess

from ...state.redisproc import RedisProcess, require_redis

PASSWORDS = {"alice": "correct horse", "bob": "battery staple"}


class LoginApi(BaseHTTPRequestHandler):
    """``POST /login`` with ``{"username", "password"}`` (JSON or a form): 200 or 401."""

    tries: list[str] = []
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            doc = json.loads(body)
        except ValueError:
            doc = dict(pair.split("=", 1) for pair in body.decode().split("&") if "=" in pair)
        user = str(doc.get("username", "")).strip().lower()
        with LoginApi.lock:
            LoginApi.tries.append(user)
        ok = PASSWORDS.get(user) == doc.get("password")
        answer = json.dumps({"ok": ok}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


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


def config(upstream: str, state: dict[str, Any], max_failures: int = 3) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "trusted_proxies": ["127.0.0.1/32"]},
        "access_log": {"path": "access.log"},
        "backends": state,
        "services": [{
            "name": "app",
            "upstream": upstream,
            "routes": [{
                "path": "/login", "methods": ["POST"], "public": True,
                "policies": {"login": {"account": "body:/username", "max_failures": max_failures,
                                       "backoff": 2, "max_backoff": 8}},
            }],
        }],
    }


@pytest.fixture(params=["memory", "redis"])
def gateway(request: pytest.FixtureRequest, login_api: str) -> Iterator[GatewayProcess]:
    """One fresh gateway per test and state backend (memory; a real redis-server, flushed)."""
    state: dict[str, Any] = {"state": "memory"}
    if request.param == "redis":
        require_redis()
        redis: RedisProcess = request.getfixturevalue("redis_server")
        redis.flush()
        state = {"state": "redis", "redis": {"url": redis.url}}
    with GatewayProcess(config(login_api, state)) as gw:
        yield gw


def login(gw: GatewayProcess, user: str, password: str, ip: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{gw.url}/login", json={"username": user, "password": password},
                      headers={"x-forwarded-for": ip}, timeout=10, **kwargs)


def test_failures_from_many_addresses_lock_the_account_until_it_expires(gateway: GatewayProcess) -> None:
    """Three wrong passwords for alice, each from another address, reach the upstream (401);
    the fourth try, from a fifth address and with the right password, is 429 problem+json
    with ``Retry-After: 2`` and never reaches the upstream. Bob, from an address that
    guessed, still logs in. Once the lockout is over, alice's right password works, and
    that success resets her count: three more failures are needed to lock her again."""
    LoginApi.tries.clear()
    for i in range(3):
        assert login(gateway, "alice", "guess", f"198.51.100.{i}").status_code == 401
    locked = login(gateway, "Alice", PASSWORDS["alice"], "203.0.113.9")
    assert locked.status_code == 429, locked.text
    assert locked.headers["retry-after"] == "2"
    assert locked.headers["content-type"].startswith("application/problem+json")
    assert "alice" not in locked.text.lower()
    assert LoginApi.tries == ["alice"] * 3
    assert login(gateway, "bob", PASSWORDS["bob"], "198.51.100.0").status_code == 200
    record = gateway.wait_for_access_record(lambda r: r.get("status") == 429)
    assert record["blocked_by"] == "login"
    assert record["decisions"] == [{"stage": "login", "action": "block", "reason": "auth.account_locked"}]
    assert "alice" not in json.dumps(record).lower()

    time.sleep(2.3)  # past the lockout (its Retry-After)
    assert login(gateway, "alice", PASSWORDS["alice"], "203.0.113.9").status_code == 200
    for i in range(3):
        assert login(gateway, "alice", "guess", f"192.0.2.{i}").status_code == 401
    again = login(gateway, "alice", "guess", "192.0.2.7")
    assert again.status_code == 429
    assert again.headers["retry-after"] == "2"  # the success forgot the doubling too


def test_the_back_off_doubles_while_the_guessing_goes_on(gateway: GatewayProcess) -> None:
    """With no success between them, each new lockout of an account lasts twice the last:
    the second is announced with ``Retry-After: 4``."""
    for i in range(3):
        assert login(gateway, "carol", "guess", f"198.51.100.{i}").status_code == 401
    assert login(gateway, "carol", "guess", "198.51.100.3").headers["retry-after"] == "2"
    time.sleep(2.3)
    for i in range(3):
        assert login(gateway, "carol", "guess", f"198.51.100.{10 + i}").status_code == 401
    second = login(gateway, "carol", "guess", "198.51.100.20")
    assert second.status_code == 429
    assert second.headers["retry-after"] == "4"


def test_a_login_that_names_no_account_is_refused(gateway: GatewayProcess) -> None:
    """A login without the account field, or with the field twice (the backend might read
    the other one), is refused 400 before the upstream: it cannot be tried past the count.
    A form body names it too, and counts for the same account as the JSON one."""
    LoginApi.tries.clear()
    for body in (b'{"password": "x"}', b'{"username": "dave", "username": "alice", "password": "x"}'):
        refused = httpx.post(f"{gateway.url}/login", content=body, headers={"content-type": "application/json"},
                             timeout=10)
        assert refused.status_code == 400, refused.text
    assert LoginApi.tries == []
    form = {"content-type": "application/x-www-form-urlencoded"}
    for _ in range(3):
        assert httpx.post(f"{gateway.url}/login", content=b"username=DAVE&password=x", headers=form,
                          timeout=10).status_code == 401
    assert login(gateway, "dave", "x", "192.0.2.1").status_code == 429


def test_concurrent_guesses_through_two_instances_are_counted_exactly(login_api: str) -> None:
    """Two gateways sharing one Redis take 24 wrong passwords for one account at once, from
    24 addresses: exactly 5 (max_failures) reach the upstream, every other try is 429."""
    require_redis()
    redis = RedisProcess().start()
    try:
        state = {"state": "redis", "redis": {"url": redis.url}}
        with GatewayProcess(config(login_api, state, 5)) as one, GatewayProcess(config(login_api, state, 5)) as two:
            LoginApi.tries.clear()
            gateways = [one, two] * 12
            with ThreadPoolExecutor(max_workers=24) as pool:
                answers = list(pool.map(
                    lambda i: login(gateways[i], "erin", "guess", f"198.51.100.{i}").status_code, range(24)))
            assert sorted(answers) == [401] * 5 + [429] * 19
            assert LoginApi.tries == ["erin"] * 5
    finally:
        redis.stop()


def docs_example() -> dict[str, Any]:
    """The YAML example of docs/identity.md's "Login lockout per account" section, parsed."""
    text = (Path(__file__).resolve().parents[3] / "docs" / "identity.md").read_text(encoding="utf-8")
    section = text.split("## Login lockout per account", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    parsed = yaml.safe_load(block)
    assert isinstance(parsed, dict)
    return parsed


def test_the_documented_example_runs(login_api: str, redis_server: RedisProcess) -> None:
    """docs/identity.md's example, as written but for its upstream and Redis addresses, locks
    an account after its five failed logins from five addresses: the sixth try is 429 with
    ``Retry-After: 60`` (its `backoff`), and never reaches the upstream."""
    example = docs_example()
    example["backends"]["redis"]["url"] = redis_server.url
    example["services"][0]["upstream"] = login_api
    example["listen"] = {"host": "127.0.0.1", "trusted_proxies": ["127.0.0.1/32"]}
    redis_server.flush()
    with GatewayProcess(example) as gw:
        LoginApi.tries.clear()
        for i in range(5):
            assert login(gw, "frank", "guess", f"198.51.100.{i}").status_code == 401
        locked = login(gw, "frank", "guess", "198.51.100.9")
        assert (locked.status_code, locked.headers.get("retry-after")) == (429, "60")
        assert LoginApi.tries == ["frank"] * 5
