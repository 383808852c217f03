"""Client address lists: CIDR networks, IPv4 and IPv6, decided once per address.

An address is parsed once and kept (bounded), since the same clients come back; an
IPv4-mapped IPv6 address (``::ffff:10.0.0.1``, what a dual-stack socket reports for an IPv4
peer) is the IPv4 address it maps, so an IPv4 list cannot be dodged through the IPv6 form.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

#: Most addresses (and decisions) remembered; the cache is emptied when it is full, so a
#: flood of new addresses costs parsing, never memory.
CACHE_SIZE = 4096

_parsed: dict[str, Address | None] = {}


def parse_client(text: str) -> Address | None:
    """The client address ``text`` names (IPv4-mapped IPv6 unmapped); ``None`` if not an address."""
    if text in _parsed:
        return _parsed[text]
    addr: Address | None
    try:
        addr = ip_address(text.partition("%")[0])  # a zone id (fe80::1%eth0) names no other host
    except ValueError:
        addr = None
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if len(_parsed) >= CACHE_SIZE:
        _parsed.clear()
    _parsed[text] = addr
    return addr


class AddressRule:
    """An allow list and a deny list: deny wins; an empty allow list allows any address. An
    address that cannot be parsed is refused where there is any list (fail closed)."""

    __slots__ = ("_allow", "_decided", "_deny")

    def __init__(self, allow: Iterable[Network], deny: Iterable[Network]) -> None:
        self._allow = tuple(allow)
        self._deny = tuple(deny)
        self._decided: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._allow or self._deny)

    def allows(self, client: str) -> bool:
        """Whether ``client`` (an address as the proxy resolved it) may call."""
        known = self._decided.get(client)
        if known is not None:
            return known
        addr = parse_client(client)
        result = addr is not None and allowed(addr, self._allow, self._deny)
        if len(self._decided) >= CACHE_SIZE:
            self._decided.clear()
        self._decided[client] = result
        return result


def allowed(addr: Address, allow: tuple[Network, ...], deny: tuple[Network, ...]) -> bool:
    """Whether ``addr`` is in no network of ``deny`` and (when ``allow`` lists any) in one of ``allow``.
    Networks of the other family never match."""
    for net in deny:
        if addr.version == net.version and addr in net:
            return False
    if not allow:
        return True
    return any(addr.version == net.version and addr in net for net in allow)
