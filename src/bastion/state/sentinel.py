"""``redis+sentinel://`` URLs: Redis reached through Sentinel, which names the current master.

    redis+sentinel://[[user]:password@]host:port[,host:port...]/mastername[/db]

The hosts are Sentinels (default port 26379); ``mastername`` is the name they monitor the
master under; the password (if any) and the database are the master's. The worker asks the
Sentinels, in order, for the master's address each time it (re)connects, so after a failover
the next connection goes to the new master. Only the URL's syntax lives here (no I/O): the
configuration checks it, the lean client (:mod:`bastion.state.resp`) and redis-py use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from bastion.state.multihost import parse_multi_host

SCHEME = "redis+sentinel"
DEFAULT_PORT = 26379


@dataclass(frozen=True, slots=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None


def parse_sentinel_url(url: str) -> SentinelURL:
    """The parts of a ``redis+sentinel://`` URL; ``ValueError`` saying what is wrong (without
    the password)."""
    url_parts = parse_multi_host(url, SCHEME, DEFAULT_PORT, each="each Sentinel", node="the Sentinel")
    path = url_parts.path
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise ValueError("the path must be /mastername or /mastername/db (the name Sentinel monitors the master by)")
    if len(parts) == 2 and not parts[1].isdigit():
        raise ValueError(f"the database must be a number, got {parts[1]!r}")
    return SentinelURL(url_parts.hosts, unquote(parts[0]), int(parts[1]) if len(parts) == 2 else 0,
                       url_parts.username, url_parts.password)


__all__ = ["DEFAULT_PORT", "SCHEME", "SentinelURL", "parse_sentinel_url"]
