"""The part Redis Sentinel and Cluster URLs share: ``scheme://[user[:password]@]host[:port],host[:port]/path``,
several hosts where a plain URL has one."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote


@dataclass(frozen=True, slots=True)
class MultiHostURL:
    hosts: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    #: What follows the hosts, without its leading ``/``.
    path: str


def parse_multi_host(url: str, scheme: str, default_port: int, *, each: str, node: str) -> MultiHostURL:
    """The parts of ``url``; ``ValueError`` saying what is wrong (without the password).
    ``each``/``node`` name a host in messages (``each Sentinel`` / ``the Sentinel``)."""
    found, sep, rest = url.partition("://")
    if found != scheme or not sep:
        raise ValueError(f"expected a {scheme}:// URL")
    netloc, _, path = rest.partition("/")
    username: str | None = None
    password: str | None = None
    if "@" in netloc:
        credentials, _, netloc = netloc.rpartition("@")
        user, has_password, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    hosts: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if not host:
            raise ValueError(f"{each} needs a host (host:port, separated by commas)")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{node} {item.strip()!r} has an invalid port")
        hosts.append((host.strip("[]"), int(port) if port else default_port))
    return MultiHostURL(tuple(hosts), username, password, path)
