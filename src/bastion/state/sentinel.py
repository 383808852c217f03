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
    scheme, sep, rest = url.partition("://")
    if scheme != SCHEME or not sep:
        raise ValueError(f"expected a {SCHEME}:// URL")
    netloc, _, path = rest.partition("/")
    username: str | None = None
    password: str | None = None
    if "@" in netloc:
        credentials, _, netloc = netloc.rpartition("@")
        user, has_password, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    sentinels: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if not host:
            raise ValueError("each Sentinel needs a host (host:port, separated by commas)")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"the Sentinel {item.strip()!r} has an invalid port")
        sentinels.append((host.strip("[]"), int(port) if port else DEFAULT_PORT))
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise ValueError("the path must be /mastername or /mastername/db (the name Sentinel monitors the master by)")
    if len(parts) == 2 and not parts[1].isdigit():
        raise ValueError(f"the database must be a number, got {parts[1]!r}")
    return SentinelURL(tuple(sentinels), unquote(parts[0]), int(parts[1]) if len(parts) == 2 else 0, username, password)


__all__ = ["DEFAULT_PORT", "SCHEME", "SentinelURL", "parse_sentinel_url"]
