"""A real Redis Cluster for the tests: three ``redis-server --cluster-enabled yes`` masters on
free loopback ports (client and bus ports both chosen free), each with ``replicas`` replicas
if asked, joined by ``redis-cli --cluster create``; stopped by PID. A test may kill a master
and wait for its replica to take over (:meth:`RedisCluster.kill`, :meth:`RedisCluster.wait_promoted`).

A free port can be taken by someone else between the choice and the server's bind, so a
node that exits at start is started again on new ports (three tries); each node logs to a
file in its folder, and a failure quotes the end of those logs."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from bastion.testing import free_port
from tests.state.redisproc import REDIS_SERVER, require_redis

REDIS_CLI = shutil.which("redis-cli")


#: With replicas: how long (ms) a silent master takes to be judged failed and replaced.
#: Short, for the tests' sake; without replicas the default (15 s) is kept, since a node
#: judged failed on a loaded machine could then stop the whole cluster.
FAILOVER_NODE_TIMEOUT_MS = 2000


class RedisCluster:
    """Three masters, ``replicas`` replicas each (none by default), every slot covered."""

    def __init__(self, folder: Path, replicas: int = 0) -> None:
        self.folder = folder
        self.replicas = replicas
        self.size = 3 * (1 + replicas)
        self.ports = [free_port() for _ in range(self.size)]
        self.procs: list[subprocess.Popen[bytes]] = []
        #: Each node's process, by port (to kill one).
        self.by_port: dict[int, subprocess.Popen[bytes]] = {}

    def url(self, *ports: int) -> str:
        """A redis+cluster:// URL naming ``ports`` as its seeds (all the nodes by default)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in (ports or self.ports))

    def start(self) -> RedisCluster:
        assert REDIS_SERVER is not None and REDIS_CLI is not None
        for attempt in range(3):
            if self._start_nodes(attempt):
                break
            self.stop()
            self.ports = [free_port() for _ in range(self.size)]
        else:
            raise RuntimeError(f"Redis Cluster: a node exited at start three times; logs: {self._logs()}")
        self._wait(lambda: all(self._answers(p) for p in self.ports), "the nodes to answer")
        made = subprocess.run(
            [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if made.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {made.stdout[-500:]} {made.stderr[-500:]}")
        self._wait(lambda: all(self._ok(p) for p in self.ports), "cluster_state:ok on every node")
        if self.replicas:
            self._wait(lambda: all(self._replica_linked(p) for p in self.ports), "every replica linked to its master")
        return self

    def _start_nodes(self, attempt: int) -> bool:
        """Start the nodes; False when one of them exits within its first moments."""
        assert REDIS_SERVER is not None
        bus_ports = set()
        while len(bus_ports) < self.size:
            port = free_port()
            if port not in self.ports:
                bus_ports.add(port)
        timeout = ("--cluster-node-timeout", str(FAILOVER_NODE_TIMEOUT_MS)) if self.replicas else ()
        for port, bus in zip(self.ports, sorted(bus_ports), strict=True):
            node = self.folder / f"try{attempt}-node-{port}"
            node.mkdir()
            proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(port), "--cluster-port", str(bus), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes", "--cluster-config-file", str(node / "nodes.conf"), "--dir", str(node),
                 "--logfile", str(node / "redis.log"), "--save", "", "--appendonly", "no", *timeout],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            self.procs.append(proc)
            self.by_port[port] = proc
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(proc.poll() is not None for proc in self.procs):
                return False
            if all(self._answers(p) for p in self.ports):
                return True
            time.sleep(0.05)
        return True  # slow, not dead: _wait below gives it more time, then quotes the logs

    def _logs(self) -> str:
        tails = []
        for log in sorted(self.folder.glob("*/redis.log")):
            tails.append(f"{log.parent.name}: {log.read_text(errors='replace')[-300:]!r}")
        return "; ".join(tails) or "(no log written)"

    def _answers(self, port: int) -> bool:
        try:
            return bool(self.node(port).ping())
        except redis.RedisError:
            return False

    def _ok(self, port: int) -> bool:
        return bool(self.node(port).cluster("info")["cluster_state"] == "ok")

    def _replica_linked(self, port: int) -> bool:
        """A master has all its replicas online; a replica's link to its master is up."""
        info = self.node(port).info("replication")
        if info["role"] == "master":
            return bool(info["connected_slaves"] == self.replicas)
        return bool(info.get("master_link_status") == "up")

    def replica_of(self, master: int) -> int:
        """The port of a replica of the master on port ``master``."""
        for line in self.node(master).execute_command("CLUSTER", "REPLICAS",
                                                      self.node(master).execute_command("CLUSTER", "MYID")):
            address = line.decode().split()[1]  # ip:port@bus
            return int(address.split("@")[0].rsplit(":", 1)[1])
        raise AssertionError(f"the master on port {master} has no replica")

    def wait_replicated(self, master: int, replica: int) -> None:
        """Until ``replica`` has applied everything ``master`` has written so far."""
        target = int(self.node(master).info("replication")["master_repl_offset"])
        self._wait(lambda: int(self.node(replica).info("replication")["slave_repl_offset"]) >= target,
                   f"the replica on port {replica} to catch up with its master")

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port``, as in a crash (its replica takes over once the others
        judge it failed, after the node timeout)."""
        proc = self.by_port[port]
        proc.kill()
        proc.wait(10)

    def wait_promoted(self, replica: int) -> None:
        """Until ``replica`` is a master and the cluster, seen from it, serves every slot."""
        def promoted() -> bool:
            try:
                return self.node(replica).info("replication")["role"] == "master" and self._ok(replica)
            except redis.RedisError:
                return False
        self._wait(promoted, f"the replica on port {replica} to be promoted")

    def _wait(self, ready: object, what: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if ready():  # type: ignore[operator]
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Redis Cluster: timed out waiting for {what}; logs: {self._logs()}")

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)

    def owner_of(self, key: str) -> int:
        """The port of the master holding ``key``'s slot."""
        slot = int(self.node(self.ports[0]).execute_command("CLUSTER", "KEYSLOT", key))
        for start, end, master, *_ in self.node(self.ports[0]).execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(master[1])
        raise AssertionError(f"no master holds slot {slot}")

    def move_slot(self, key: str) -> None:
        """Move ``key``'s slot, with its keys, to another master (as ``redis-cli --cluster
        reshard`` does): importing and migrating, MIGRATE, then every node told the new owner."""
        source = self.owner_of(key)
        target = next(p for p in self.ports if p != source)
        slot = int(self.node(source).execute_command("CLUSTER", "KEYSLOT", key))
        source_id = self.node(source).execute_command("CLUSTER", "MYID").decode()
        target_id = self.node(target).execute_command("CLUSTER", "MYID").decode()
        self.node(target).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        self.node(source).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        keys = self.node(source).execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if keys:
            self.node(source).execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        for port in self.ports:
            self.node(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.procs = []
        self.by_port = {}


def require_cluster() -> None:
    """Skip (or fail under BASTION_REQUIRE_REDIS=1) without redis-server and redis-cli."""
    require_redis()
    if REDIS_CLI is None:
        import pytest

        pytest.skip("redis-cli is not installed (it comes with redis-server: apt-get install redis-server)")
