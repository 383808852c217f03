"""The ``backends`` section: the state backend and its Redis server, with precise errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bastion.config import ConfigError, load_config
from bastion.config.model import redact_url

SERVICE = """\
services:
  - name: api
    upstream: http://127.0.0.1:9001
    routes: [{path: "/", prefix: true, public: true}]
"""


def write(tmp_path: Path, backends: str) -> Path:
    path = tmp_path / "bastion.yaml"
    path.write_text(textwrap.dedent(backends) + SERVICE)
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(i).replace(f"{path.parent}/", "") for i in info.value.issues]


def test_memory_is_the_default(tmp_path: Path) -> None:
    """Without a backends section the state backend is memory, with no Redis server."""
    loaded = load_config(write(tmp_path, ""))
    assert loaded.config.backends.state == "memory"
    assert loaded.config.backends.redis is None


def test_redis_backend_loads_with_its_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """state: redis with a URL (its password from the environment) loads, defaults filled in."""
    monkeypatch.setenv("BASTION_TEST_REDIS_PW", "pw")
    path = write(tmp_path, "backends: {state: redis, redis: {url: 'redis://:${BASTION_TEST_REDIS_PW}@10.0.0.5:6380/2'}}\n")
    redis = load_config(path).config.backends.redis
    assert redis is not None
    assert redis.url == "redis://:pw@10.0.0.5:6380/2"
    assert (redis.timeout, redis.max_connections, redis.key_prefix) == (0.25, 64, "bastion:")


def test_redis_chosen_without_a_server(tmp_path: Path) -> None:
    """Choosing redis without saying where it is, is an error that says what to add."""
    assert errors_of(write(tmp_path, "backends: {state: redis}\n")) == [
        "bastion.yaml:1: backends: state is 'redis' but no server is configured: "
        "add redis: {url: redis://host:6379/0}"
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://cache:6379",
         "expected a redis://, rediss://, unix://, redis+sentinel://host:port/mastername or "
         "redis+cluster://host:port[,host:port] URL, got 'http://cache:6379'"),
        ("redis://:${BASTION_TEST_REDIS_PW}@cache:99999/0", "the URL 'redis://:***@cache:99999/0' has an invalid port"),
        ("redis:///0", "the URL 'redis:///0' has no host"),
        ("redis://cache/db1", "the URL 'redis://cache/db1': the path must be a database number (like /0), got '/db1'"),
        ("unix://", "the URL 'unix://' has no socket path"),
    ],
)
def test_bad_redis_urls(tmp_path: Path, url: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad Redis URL is refused with the field and the reason, its password masked."""
    monkeypatch.setenv("BASTION_TEST_REDIS_PW", "pw")
    path = write(tmp_path, f"backends:\n  state: redis\n  redis:\n    url: '{url}'\n")
    assert errors_of(path) == [f"bastion.yaml:4: backends.redis.url: {message}"]


def test_password_from_environment_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad URL whose password came from ${VAR} is reported without the password."""
    monkeypatch.setenv("BASTION_TEST_REDIS_PW", "hunter2-secret")
    path = write(tmp_path, "backends: {state: redis, redis: {url: 'redis://u:${BASTION_TEST_REDIS_PW}@h:0x/0'}}\n")
    [error] = errors_of(path)
    assert "hunter2-secret" not in error
    assert "redis://u:***@h:0x/0" in error


def test_unknown_state_backend_and_fields(tmp_path: Path) -> None:
    """An unknown backend name and a misspelt setting are both named."""
    path = write(tmp_path, "backends: {state: memcached, redis: {url: 'redis://h/0', timout: 1}}\n")
    assert errors_of(path) == [
        "bastion.yaml:1: backends.state: Input should be 'memory' or 'redis' (got 'memcached')",
        "bastion.yaml:1: backends.redis.timout: unknown field (did you mean 'timeout'?); expected one of: "
        "url, timeout, max_connections, key_prefix",
    ]


def test_redact_url() -> None:
    """Only the password is masked; URLs without one are unchanged."""
    assert redact_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert redact_url("rediss://:pw@h/0") == "rediss://:***@h/0"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
