"""``redis+cluster://`` URLs: Redis Cluster, with every one of Bastion's keys in one slot.

    redis+cluster://[[user]:password@]host:port[,host:port...][/]

The hosts are seed nodes of the cluster (default port 6379), asked in order when a worker
connects; the password (if any) is the nodes'. Redis Cluster has only database 0.

A script runs on one node, over keys of one hash slot: a rate limit's script touches every
limit of a request (by IP, by consumer, global...) at once, and those keys must share a slot
for the check-and-count to stay one atomic round trip. So on a cluster the backend's key
prefix is a hash tag (``{bastion:}``): every key of Bastion hashes to the slot of the prefix,
one master holds them all, and every script keeps working unchanged. The cluster then gives
Bastion's state its failover, not sharding: several gateways sharing one cluster use several
prefixes (``key_prefix``) to spread over its masters.

The worker keeps one connection, to the master of that slot: it connects to a seed, and a
``MOVED`` answer (the seed is not that master, or a failover moved the slot) names the
master to connect to; the command is then sent again there (a ``MOVED`` command was not run).
Only the URL's syntax and the redirections' parsing live here (no I/O).
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.state.multihost import parse_multi_host

SCHEME = "redis+cluster"
DEFAULT_PORT = 6379


@dataclass(frozen=True, slots=True)
class ClusterURL:
    seeds: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None


def parse_cluster_url(url: str) -> ClusterURL:
    """The parts of a ``redis+cluster://`` URL; ``ValueError`` saying what is wrong (without
    the password)."""
    parts = parse_multi_host(url, SCHEME, DEFAULT_PORT, each="each seed node", node="the node")
    path = parts.path
    if path.strip("/") not in ("", "0"):
        raise ValueError(f"Redis Cluster has only database 0, got {'/' + path.strip('/')!r}")
    return ClusterURL(parts.hosts, parts.username, parts.password)


def hash_tagged(prefix: str) -> str:
    """``prefix`` as a hash tag: every key that starts with it hashes to one slot (braces
    taken out, and never empty: Redis hashes a key with an empty tag whole)."""
    return "{" + (prefix.replace("{", "").replace("}", "") or "bastion") + "}"


def moved_to(message: str) -> tuple[str, int] | None:
    """The node a ``MOVED slot host:port`` (or ``ASK``) error names, or ``None``; its host is
    ``""`` when the node left it out (the same host as the node that answered)."""
    kind, _, rest = message.partition(" ")
    if kind not in ("MOVED", "ASK"):
        return None
    _, _, address = rest.partition(" ")
    host, colon, port = address.strip().rpartition(":")
    if not colon or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


__all__ = ["DEFAULT_PORT", "SCHEME", "ClusterURL", "hash_tagged", "moved_to", "parse_cluster_url"]
