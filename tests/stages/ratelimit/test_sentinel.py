"""``redis+sentinel://`` through a real ``redis-server --sentinel``: the worker asks the
Sentinel for the master on every connection, so when the Sentinel names another master and
the old one dies, the next connection goes to the new one. Also: the URL's mistakes, and
Redis Cluster URLs checked with precise errors (the cluster itself: ``test_cluster.py``)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bastion.config import ConfigError, load_config
from bastion.proxy.worker import Worker
from bastion.state.resp import IncompleteReply, encode, parse
from bastion.state.sentinel import parse_sentinel_url
from bastion.testing import free_port
from tests.proxy.scripted import ScriptedUpstream
from tests.stages.ratelimit.test_gateway import identity, run, serving, signed_in, write_config
from tests.state.redisproc import REDIS_SERVER, RedisProcess, require_redis


def ask(port: int, *command: str) -> bytes:
    """One command to the server on ``port``; its whole reply, raw."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(encode(command))
        buf = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return buf
            buf += chunk
            try:
                parse(buf, 0)
                return buf
            except IncompleteReply:
                continue


class SentinelProcess:
    """``redis-server <conf> --sentinel`` on a free port, monitoring ``mymaster``."""

    def __init__(self, folder: Path, master_port: int) -> None:
        self.port = free_port()
        self.conf = folder / "sentinel.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor mymaster 127.0.0.1 {master_port} 1\n"
            "sentinel down-after-milliseconds mymaster 600000\n"  # no failover of its own
        )
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen([REDIS_SERVER, str(self.conf), "--sentinel"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if ask(self.port, "PING").startswith(b"+PONG"):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server --sentinel did not answer")

    def monitor(self, master_port: int) -> None:
        """Name another master for ``mymaster`` (what a failover does)."""
        assert ask(self.port, "SENTINEL", "REMOVE", "mymaster").startswith(b"+OK")
        assert ask(self.port, "SENTINEL", "MONITOR", "mymaster", "127.0.0.1", str(master_port), "1").startswith(b"+OK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def two_masters() -> Iterator[tuple[RedisProcess, RedisProcess]]:
    require_redis()
    one, two = RedisProcess().start(), RedisProcess().start()
    try:
        yield one, two
    finally:
        one.stop()
        two.stop()


def test_the_master_is_asked_of_the_sentinel_on_every_connection(
        tmp_path: Path, upstream: ScriptedUpstream, two_masters: tuple[RedisProcess, RedisProcess]) -> None:
    """A rate limit of 3 per hour on ``redis+sentinel://.../mymaster/0``: two requests count
    on the first master. The Sentinel then names the second master and the first is killed:
    the worker's next connection asks the Sentinel again, and the first request that is not a
    503 is counted afresh on the second master (2 left), where its key now is."""
    one, two = two_masters
    sentinel = SentinelProcess(tmp_path, one.port)
    try:
        url = f"redis+sentinel://127.0.0.1:{sentinel.port}/mymaster/0"
        path, port = write_config(tmp_path, upstream, {"limit": 3, "window": "1h", "by": "ip", "name": "per-ip"},
                                  {"state": "redis", "redis": {"url": url, "timeout": 0.5}})
        worker = Worker(str(path), identity=identity(), load=signed_in)

        async def scenario(client: httpx.AsyncClient) -> tuple[list[httpx.Response], list[httpx.Response]]:
            before = [await client.get(f"http://127.0.0.1:{port}/s") for _ in range(2)]
            assert b"ratelimit" in ask(one.port, "KEYS", "*")
            sentinel.monitor(two.port)
            one.kill()
            after: list[httpx.Response] = []
            while len(after) < 5 and (not after or after[-1].status_code == 503):
                after.append(await client.get(f"http://127.0.0.1:{port}/s"))
                await asyncio.sleep(0)
            return before, after

        before, after = run(lambda: serving([worker], scenario))
    finally:
        sentinel.stop()
    assert [a.headers["ratelimit"] for a in before] == ['"per-ip";r=2;t=1200', '"per-ip";r=1;t=2400']
    assert after[-1].status_code == 200 and after[-1].headers["ratelimit"] == '"per-ip";r=2;t=1200'
    assert all(a.status_code == 503 for a in after[:-1])
    assert b"ratelimit" in ask(two.port, "KEYS", "*")


def test_sentinel_urls_are_parsed_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several Sentinels, a password and a database parse; a URL without the master's name,
    with a database that is not a number, or a Redis Cluster URL with a database or a bad
    port is a configuration error naming the field and the fix, never showing the password."""
    parsed = parse_sentinel_url("redis+sentinel://:s3cret@10.0.0.1:26380,10.0.0.2/orders/2")
    assert parsed.sentinels == (("10.0.0.1", 26380), ("10.0.0.2", 26379))
    assert (parsed.master, parsed.db, parsed.password) == ("orders", 2, "s3cret")
    monkeypatch.setenv("SENTINEL_PW", "s3cret")  # a password in plain text is refused first
    cases = {
        "redis+sentinel://:${SENTINEL_PW}@10.0.0.1:26379": "the path must be /mastername or /mastername/db",
        "redis+sentinel://10.0.0.1:26379/orders/x": "the database must be a number, got 'x'",
        "redis+cluster://:${SENTINEL_PW}@10.0.0.1:7000/2": "Redis Cluster has only database 0, got '/2'",
        "redis+cluster://:${SENTINEL_PW}@10.0.0.1:x": "the node '10.0.0.1:x' has an invalid port",
    }
    for url, message in cases.items():
        (tmp_path / "bastion.yaml").write_text(
            f"backends: {{state: redis, redis: {{url: '{url}'}}}}\n"
            "services: [{name: api, upstream: 'http://127.0.0.1:9', routes: [{path: /, public: true}]}]\n")
        with pytest.raises(ConfigError) as info:
            load_config(tmp_path / "bastion.yaml")
        text = str(info.value.issues[0])
        assert "backends.redis.url" in text and message in text, text
        assert "s3cret" not in text


def test_publish_and_subscribe_go_to_the_master_the_sentinel_names(
        tmp_path: Path, two_masters: tuple[RedisProcess, RedisProcess]) -> None:
    """The backend's publish/subscribe (redis-py, not the lean client) also finds the master
    through the Sentinel: a message published through one backend reaches a subscriber of
    another, both on ``redis+sentinel://``, and the master the Sentinel names saw them."""
    from bastion.state.redis import RedisBackend

    one, _ = two_masters
    sentinel = SentinelProcess(tmp_path, one.port)
    url = f"redis+sentinel://127.0.0.1:{sentinel.port}/mymaster/0"

    async def scenario() -> bytes:
        sender, receiver = RedisBackend(url, timeout=2), RedisBackend(url, timeout=2)
        try:
            subscription = await receiver.subscribe("news")

            async def first() -> bytes:
                async for message in subscription:
                    return message
                raise AssertionError("the subscription ended without a message")

            await sender.publish("news", b"revoked:abc")
            try:
                return await asyncio.wait_for(first(), 10)  # a bound, so a failure cannot hang
            finally:
                await subscription.close()
        finally:
            await sender.close()
            await receiver.close()

    try:
        message = run(scenario)
        channels = ask(one.port, "PUBSUB", "NUMSUB", "bastion:news")
    finally:
        sentinel.stop()
    assert message == b"revoked:abc"
    assert b"bastion:news" in channels
