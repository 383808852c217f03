"""The login stage's parts: where a login names its account, the counting scripts on both
state backends (the Lua and the Python copy must answer alike), and config errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bastion.config import load_config
from bastion.pipeline.stage import RouteInfo
from bastion.stages.login import LoginConfig, LoginStage
from bastion.stages.login.lockout import ATTEMPT, SETTLE, account_keys
from bastion.state import MemoryBackend, StateBackend
from bastion.state.redis import RedisBackend
from bastion.types import Request
from tests.config.util import errors_of, write
from tests.state.redisproc import RedisProcess

ROUTE = RouteInfo("login", "app", "/login", frozenset({"POST"}), True)


def stage(account: str) -> LoginStage:
    found = LoginStage.from_config(LoginConfig(account=account), ROUTE)
    assert found is not None
    return found


def request(body: bytes = b"", content_type: str = "application/json", query: str = "",
            headers: list[tuple[str, str]] | None = None) -> Request:
    req = Request("POST", "/login", "/login", query, [("content-type", content_type), *(headers or [])])
    req.body = body
    return req


def test_the_account_is_read_where_the_route_says_and_never_guessed() -> None:
    """A JSON pointer reads JSON bodies (nested, escaped) and, with one part, form bodies; a
    query or header name reads those. The name is trimmed and case-folded. A login naming no
    account, two different ones, a duplicated JSON key, a non-text value, or a body of another
    type names none (the stage then refuses it)."""
    flat = stage("body:/username")
    assert flat.account_of(request(b'{"username": " Alice ", "password": "x"}')) == "alice"
    assert flat.account_of(request(b"username=Bob&password=x", "application/x-www-form-urlencoded")) == "bob"
    assert flat.account_of(request(b'{"username": 42}')) == "42"
    for body, media in [
        (b'{"password": "x"}', "application/json"),
        (b'{"username": "a", "username": "b"}', "application/json"),
        (b'{"username": ["a"]}', "application/json"),
        (b'{"username": ""}', "application/json"),
        (b"not json", "application/json"),
        (b"username=a&username=b", "application/x-www-form-urlencoded"),
        (b"<user>a</user>", "application/xml"),
        (b"", "application/json"),
    ]:
        assert flat.account_of(request(body, media)) is None, body
    # A body validation parsed letting a duplicate through (orjson kept the last) is parsed
    # again here, duplicates refused: the backend might read the first.
    duplicated = request(b'{"username": "victim", "username": "decoy"}')
    duplicated.parsed_json = ({"username": "decoy"},)
    assert flat.account_of(duplicated) is None
    nested = stage("body:/user/a~1b")
    assert nested.account_of(request(b'{"user": {"a/b": "carol"}}')) == "carol"
    assert nested.account_of(request(b"user=carol", "application/x-www-form-urlencoded")) is None
    by_query = stage("query:user")
    assert by_query.account_of(request(query="user=Dave%20")) == "dave"
    assert by_query.account_of(request(query="user=a&user=b")) is None
    by_header = stage("header:X-User")
    assert by_header.account_of(request(headers=[("x-user", "Erin")])) == "erin"
    assert by_header.account_of(request(headers=[("x-user", "a"), ("x-user", "b")])) is None
    assert by_header.account_of(request()) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def backend(kind: str, clock: Clock, request: pytest.FixtureRequest) -> StateBackend:
    if kind == "memory":
        return MemoryBackend(clock)
    server: RedisProcess = request.getfixturevalue("redis_server")
    server.flush()
    return RedisBackend(server.url, timeout=2.0, key_prefix="login-test:")


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_tries_lock_at_the_threshold_double_and_reset_on_success(kind: str, request: pytest.FixtureRequest) -> None:
    """With 2 tries allowed: two tries answer 0 (counted), the third locks for `backoff`
    (10 s) and is refused; a try while locked answers what is left. After the lock, the next
    lockout doubles (20 s), capped at 25 s. A refunded try is not counted; a success clears
    the count and the doubling, so the lockout after it is 10 s again."""
    clock = Clock()
    state = backend(kind, clock, request)
    keys = account_keys("acct")
    args = (600_000, 10_000, 25_000, 100_000, 2)

    async def attempt() -> int:
        answer = await state.run(ATTEMPT, keys, args)
        assert isinstance(answer, int)
        return answer

    async def expire_lock() -> None:
        await state.delete(keys[2])  # as its TTL would (Redis keeps its own time)
        clock.now += 30

    async def scenario() -> list[int]:
        answers = [await attempt() for _ in range(3)]  # 0, 0, 10000
        answers.append(await attempt())  # locked: what is left (<= 10000)
        await expire_lock()
        answers += [await attempt() for _ in range(3)]  # 0, 0, 20000
        await expire_lock()
        answers += [await attempt() for _ in range(3)]  # 0, 0, 25000 (capped)
        await expire_lock()
        answers.append(await attempt())  # 0
        await state.run(SETTLE, keys, ("refund",))
        answers += [await attempt() for _ in range(2)]  # 0, 0: the refunded try is not counted
        await state.run(SETTLE, keys, ("success",))
        answers += [await attempt() for _ in range(3)]  # 0, 0, 10000: reset, doubling forgotten
        await state.run(SETTLE, keys, ("refund",))  # nothing counted: stays at nothing
        await state.close()
        return answers

    answers = asyncio.run(scenario())
    assert answers[:3] == [0, 0, 10_000]
    assert 0 < answers[3] <= 10_000
    assert answers[4:11] == [0, 0, 20_000, 0, 0, 25_000, 0]
    assert answers[11:] == [0, 0, 0, 0, 10_000]


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    """A login's account that names no place, a statuses list with a success in it, and a
    back-off above its cap are load errors naming the field and what is wrong; a good one
    builds a login stage on the route."""
    path = write(tmp_path, """\
        services:
          - name: app
            upstream: http://127.0.0.1:9
            routes:
              - path: /login
                methods: [POST]
                public: true
                policies:
                  login: {account: "username", failure_statuses: [401, 200], backoff: 10, max_backoff: 5}
        """)
    text = "\n".join(errors_of(path))
    assert "login.account" in text and "does not say where the account is" in text
    assert "200 is not an error status" in text
    path = write(tmp_path, """\
        services:
          - name: app
            upstream: http://127.0.0.1:9
            routes:
              - path: /login
                methods: [POST]
                public: true
                policies:
                  login: {account: "body:/username"}
        """)
    (route,) = load_config(path).routes
    assert any(isinstance(s, LoginStage) for s in route.built)
