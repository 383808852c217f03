"""``redis+cluster://`` through a real three-master Redis Cluster: every key of Bastion in the
one hash slot of its prefix, so a request's limits are still checked and counted in one
atomic script (exact), whichever node the URL names first."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bastion.proxy.worker import Worker
from bastion.state.cluster import hash_tagged, moved_to, parse_cluster_url
from bastion.state.redis import RedisBackend
from tests.proxy.scripted import ScriptedUpstream
from tests.stages.ratelimit.test_gateway import identity, run, serving, signed_in, write_config
from tests.state.clusterproc import RedisCluster, require_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    require_cluster()
    started = RedisCluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield started
    finally:
        started.stop()


def test_two_gateways_on_a_cluster_admit_exactly_the_limit(tmp_path: Path, upstream: ScriptedUpstream,
                                                           cluster: RedisCluster) -> None:
    """Two limits on each request (25 per hour in all, 1000 per hour per IP: two keys, one
    script), two gateways whose URL names only a master that does not hold Bastion's slot
    (it names the one that does): of 80 concurrent requests exactly 25 get 200, and every key
    is on the master of that slot, under the hash-tagged prefix."""
    prefix = hash_tagged("bastion:")
    owner = cluster.owner_of(prefix + "x")
    other = next(p for p in cluster.ports if p != owner)
    backends = {"state": "redis", "redis": {"url": cluster.url(other), "timeout": 1}}
    limits = [{"limit": 25, "window": "1h", "by": "global"}, {"limit": 1000, "window": "1h", "by": "ip"}]
    path_a, port_a = write_config(tmp_path, upstream, limits, backends, "a.yaml")  # type: ignore[arg-type]
    path_b, port_b = write_config(tmp_path, upstream, limits, backends, "b.yaml")  # type: ignore[arg-type]
    workers = [Worker(str(p), identity=identity(i, 2), load=signed_in) for i, p in enumerate((path_a, path_b))]

    async def scenario(client: httpx.AsyncClient) -> list[int]:
        results = await asyncio.gather(*(client.get(f"http://127.0.0.1:{port}/x")
                                         for _ in range(40) for port in (port_a, port_b)))
        return sorted(r.status_code for r in results)

    assert run(lambda: serving(workers, scenario)) == [200] * 25 + [429] * 55
    keys = {port: [k.decode() for k in cluster.node(port).keys("*")] for port in cluster.ports}
    assert len(keys[owner]) >= 2 and all(k.startswith(prefix + "ratelimit:") for k in keys[owner])
    assert all(not keys[p] for p in cluster.ports if p != owner)


def test_the_backend_follows_the_cluster_and_publishes_to_every_node(cluster: RedisCluster) -> None:
    """Counters, get/set and publish/subscribe work through a URL naming all three nodes
    (the first of which may not hold the slot); a message published by the backend reaches a
    subscriber of the backend (redis-py, on the first seed)."""

    async def scenario() -> tuple[int, bytes | None, bytes]:
        backend = RedisBackend(cluster.url(*reversed(cluster.ports)), timeout=1, key_prefix="edge:")
        try:
            await backend.incr("hits", 2, ttl=60)
            hits = await backend.incr("hits", 1, ttl=60)
            await backend.set("flag", b"on", ttl=60)
            flag = await backend.get("flag")
            subscription = await backend.subscribe("news")
            try:
                await backend.publish("news", b"hello")
                received = await asyncio.wait_for(anext(aiter(subscription)), 5)
            finally:
                await subscription.close()
            return hits, flag, received
        finally:
            await backend.close()

    assert run(scenario) == (3, b"on", b"hello")
    owner = cluster.owner_of("{edge:}hits")
    assert cluster.node(owner).get("{edge:}hits") == b"3"


def test_cluster_urls_and_redirections_are_parsed() -> None:
    """Seeds with default ports and a password parse; MOVED and ASK name their node (an
    empty host meaning the node that answered); a prefix becomes a non-empty hash tag."""
    parsed = parse_cluster_url("redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2/")
    assert parsed.seeds == (("10.0.0.1", 7000), ("10.0.0.2", 6379)) and parsed.password == "s3cret"
    assert moved_to("MOVED 3999 127.0.0.1:6381") == ("127.0.0.1", 6381)
    assert moved_to("ASK 3999 :6381") == ("", 6381)
    assert moved_to("ERR unknown command") is None
    assert hash_tagged("bastion:") == "{bastion:}" and hash_tagged("") == "{bastion}" and hash_tagged("{a}") == "{a}"


def test_a_slot_moved_to_another_master_is_followed(cluster: RedisCluster) -> None:
    """Bastion's slot is moved (its keys migrated) to another master while a backend is
    connected to the old one: the next command meets MOVED, goes to the new master and is
    answered there, so the counter goes on from where it was."""

    async def scenario() -> tuple[int, int]:
        backend = RedisBackend(cluster.url(), timeout=1, key_prefix="moving:")
        try:
            await backend.incr("hits", 2, ttl=60)
            before = await backend.incr("hits", 1, ttl=60)
            await asyncio.to_thread(cluster.move_slot, "{moving:}hits")
            return before, await backend.incr("hits", 1, ttl=60)
        finally:
            await backend.close()

    old = cluster.owner_of("{moving:}hits")
    assert run(scenario) == (3, 4)
    new = cluster.owner_of("{moving:}hits")
    assert new != old and cluster.node(new).get("{moving:}hits") == b"4"


def test_a_master_killed_its_replica_promoted_the_limit_goes_on(tmp_path: Path,
                                                                upstream: ScriptedUpstream) -> None:
    """Three masters with a replica each. Two gateways count one limit of 10 per hour; 4 are
    admitted, the replica of the master holding Bastion's slot catches up, and that master is
    killed (SIGKILL). Until its replica is promoted every request is refused with 503
    (failure_mode closed: nothing is admitted uncounted); once it is, the same gateways, not
    restarted, count on from the replica's copy (the script the new master never saw is sent
    again): the first answer after the failover says 5 are left, and of 8 concurrent requests
    then exactly 5 are admitted: 10 in all, as without a failover."""
    require_cluster()
    (tmp_path / "cluster").mkdir()
    cluster = RedisCluster(tmp_path / "cluster", replicas=1).start()
    try:
        owner = cluster.owner_of(hash_tagged("bastion:") + "x")
        replica = cluster.replica_of(owner)
        backends = {"state": "redis", "redis": {"url": cluster.url(*cluster.ports), "timeout": 0.5}}
        limit = {"limit": 10, "window": "1h", "by": "global"}
        path_a, port_a = write_config(tmp_path, upstream, limit, backends, "a.yaml")
        path_b, port_b = write_config(tmp_path, upstream, limit, backends, "b.yaml")
        workers = [Worker(str(p), identity=identity(i, 2), load=signed_in) for i, p in enumerate((path_a, path_b))]

        async def scenario(client: httpx.AsyncClient) -> tuple[list[int], list[int], str, list[int], bool]:
            before = [(await client.get(f"http://127.0.0.1:{port}/x")).status_code
                      for port in (port_a, port_b, port_a, port_b)]
            await asyncio.to_thread(cluster.wait_replicated, owner, replica)
            await asyncio.to_thread(cluster.kill, owner)
            during: list[int] = []
            for _ in range(600):  # the same request, until the promoted replica answers it (at most a minute)
                answer = await client.get(f"http://127.0.0.1:{port_a}/x")
                during.append(answer.status_code)
                if answer.status_code != 503:
                    break
                await asyncio.sleep(0.1)
            await asyncio.to_thread(cluster.wait_promoted, replica)
            wave = await asyncio.gather(*(client.get(f"http://127.0.0.1:{port}/x")
                                          for _ in range(4) for port in (port_a, port_b)))
            resent = "cmdstat_eval" in cluster.node(replica).info("commandstats")
            return before, during, answer.headers.get("ratelimit", ""), sorted(r.status_code for r in wave), resent

        before, during, fields, after, resent = run(lambda: serving(workers, scenario))
    finally:
        cluster.stop()
    assert before == [200] * 4
    assert resent  # the promoted replica had no script cached: it was sent with EVAL
    assert during[-1] == 200 and set(during[:-1]) <= {503}
    assert fields.split(";")[1] == "r=5"
    assert after == [200] * 5 + [429] * 3
