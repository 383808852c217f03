"""SSRF: find URLs and hosts in a value that point at internal addresses, in any encoding.

Parsing is done with :mod:`urllib.parse` and :mod:`ipaddress`, the way an HTTP client in
the backend would resolve the host, rather than with patterns: ``2130706433``,
``0177.0.0.1``, ``0x7f.1``, ``[::ffff:127.0.0.1]`` and ``127.1`` all mean 127.0.0.1 to
``inet_aton`` and to most HTTP libraries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from itertools import islice
from typing import Final
from urllib.parse import urlsplit

#: Names that resolve to the machine itself or to a cloud metadata service.
INTERNAL_NAMES: Final = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
        "local",
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "kubernetes.default",
        "kubernetes.default.svc",
    }
)
#: Suffixes that name internal hosts (RFC 6761 ``.localhost``; common private zones).
INTERNAL_SUFFIXES: Final = (".localhost", ".internal", ".local", ".svc.cluster.local")
#: Well-known rebinding services that resolve a name like ``127.0.0.1.nip.io`` to that IP.
REBIND_SUFFIXES: Final = (".nip.io", ".sslip.io", ".xip.io", ".localtest.me", ".lvh.me")
_SCHEMES: Final = (
    "http://", "https://", "gopher://", "dict://", "ftp://", "ws://", "wss://", "ldap://", "tftp://", "//"
)
_DIGITS: Final = frozenset("0123456789")
_HEX: Final = frozenset("0123456789abcdef")


def parse_ipv4_loose(host: str) -> ipaddress.IPv4Address | None:
    """Parse ``host`` the way ``inet_aton`` does: 1-4 parts, each decimal, octal (``0``
    prefix) or hex (``0x`` prefix); the last part fills the remaining bytes."""
    parts = host.split(".")
    if parts and parts[-1] == "":
        parts.pop()  # a trailing dot is allowed ("127.0.0.1.")
    if not 1 <= len(parts) <= 4:
        return None
    nums: list[int] = []
    for part in parts:
        p = part.lower()
        if not p:
            return None
        if p.startswith("0x"):
            digits = p[2:]
            if not digits or not _HEX.issuperset(digits) or len(digits) > 8:
                return None
            nums.append(int(digits, 16))
        elif len(p) > 1 and p[0] == "0":
            if not set("01234567").issuperset(p) or len(p) > 12:
                return None
            nums.append(int(p, 8))
        elif _DIGITS.issuperset(p) and len(p) <= 10:
            nums.append(int(p))
        else:
            return None
    value = 0
    for i, n in enumerate(nums[:-1]):
        if n > 255:
            return None
        value |= n << (24 - 8 * i)
    rest_bits = 32 - 8 * (len(nums) - 1)
    if nums[-1] >= 1 << rest_bits:
        return None
    value |= nums[-1]
    return ipaddress.IPv4Address(value)


def internal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` denotes if it is an IP literal (any encoding), else ``None``."""
    h = host.strip().strip("[]").lower()
    if "%" in h:  # IPv6 zone id
        h = h.split("%", 1)[0]
    if ":" in h:
        try:
            v6 = ipaddress.IPv6Address(h)
        except ValueError:
            return None
        return v6.ipv4_mapped or v6.sixtofour or v6
    return parse_ipv4_loose(h)


def _is_internal_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_reserved
        or ip.is_multicast
        or (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED)
    )


_SHARED: Final = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT, used by some clouds (Alibaba metadata)


def host_is_internal(host: str) -> bool:
    """Whether ``host`` (a name or IP literal in any encoding) is loopback, private,
    link-local, a metadata service or otherwise not a public Internet host."""
    h = host.strip().strip("[]").rstrip(".").lower()
    if not h:
        return False
    if h in INTERNAL_NAMES or h.endswith(INTERNAL_SUFFIXES):
        return True
    if h.endswith(REBIND_SUFFIXES):
        return True
    ip = internal_address(h)
    return ip is not None and _is_internal_ip(ip)


def urls_in(value: str, limit: int = 8) -> list[str]:
    """Hosts of the URLs embedded in ``value`` (at most ``limit``)."""
    return list(islice(_hosts(value), limit))


def _hosts(value: str) -> Iterator[str]:
    """Hosts of the URLs embedded in ``value``, in order; linear in its length."""
    low = value.lower()
    n = len(value)
    start = 0
    while True:
        idx = low.find("//", start)
        if idx < 0:
            return
        # In a run of slashes ("http:////h", "//////"), only the last two can start an
        # authority: go there at once (each '//' of a long run cost a parse).
        while idx + 2 < n and low[idx + 2] == "/":
            idx += 1
        # Walk back over the scheme letters, if any.
        s = idx
        while s > 0 and (low[s - 1].isalnum() or low[s - 1] in "+-."):
            s -= 1
        # Only the authority decides the host: stop at its end ('/', '?', '#') too.
        end = idx + 2
        while end < n and value[end] not in _AUTHORITY_STOP:
            end += 1
        start = end
        if s != idx and not low[s:idx].endswith(":"):
            continue
        authority = value[idx + 2 : end]
        if not authority or ("[" in authority) != ("]" in authority):
            continue  # no host (urlsplit finds none, or refuses an unbalanced bracket)
        host = _hostname(("http:" if s == idx else "") + value[s:end])
        if host:
            yield host


def _hostname(url: str) -> str | None:
    """``urlsplit(url).hostname``, without its cost in the common case.

    A plain ``scheme://authority`` with an ASCII authority and no brackets or backslashes
    is parsed here; anything else (IPv6 literals, odd schemes) goes to ``urlsplit``.
    """
    colon = url.find("://")
    scheme = url[:colon]
    if (
        url[:1] > " "
        and "\t" not in url
        and "\r" not in url
        and "\n" not in url
        and colon > 0
        and scheme.isascii()
        and scheme[0].isalpha()
        and (scheme.isalnum() or _SCHEME.issuperset(scheme))
    ):
        rest = url[colon + 3 :]
        stop = len(rest)
        for sep in "/?#":
            i = rest.find(sep, 0, stop)
            if i >= 0:
                stop = i
        netloc = rest[:stop]
        if netloc.isascii() and _NETLOC_ODD.isdisjoint(netloc):
            host = netloc.rpartition("@")[2].partition(":")[0]
            if not host:
                return None
            # As urlsplit: lower-cased except a zone ID after '%'.
            name, percent, zone = host.partition("%")
            return name.lower() + percent + zone
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


#: Where a URL embedded in text ends, or its authority does.
_AUTHORITY_STOP: Final = frozenset(" \t\r\n\"'<>`,;|{}\\^/?#")
_SCHEME: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")
#: Authority characters that ``urlsplit`` treats specially (IPv6 brackets) or that some
#: URL parsers read as a path separator.
_NETLOC_ODD: Final = frozenset("[]\\")


def check_ssrf(value: str) -> bool:
    """Whether ``value`` contains a URL whose host is internal (paranoia 1 detector)."""
    if "//" not in value:
        return False
    # Every URL counts (an internal one after many public ones too); each host once.
    checked: set[str] = set()
    for host in _hosts(value):
        if host not in checked:
            if host_is_internal(host):
                return True
            checked.add(host)
    return False


def check_bare_encoded_host(value: str) -> bool:
    """Whether ``value`` is a bare host in an obfuscated numeric form of an internal IPv4
    address (``0x7f000001``, ``0177.0.0.1``, ``2130706433``): paranoia 2.

    Canonical dotted private addresses are left alone here: configuration APIs legitimately
    take them, and only obfuscation is suspicious on its own.
    """
    v = value.strip().lower()
    if not v or len(v) > 64 or " " in v:
        return False
    host = v.rsplit(":", 1)[0] if v.count(":") == 1 else v
    if host.startswith("[") or ":" in host:
        ip6 = internal_address(host)
        return ip6 is not None and _is_internal_ip(ip6) and host.strip("[]") not in ("::1",)
    ip = parse_ipv4_loose(host)
    if ip is None or not _is_internal_ip(ip):
        return False
    canonical = str(ip)
    # A plain decimal number is flagged only if it is large enough to be a packed address.
    if "." not in host and _DIGITS.issuperset(host) and int(host) < 16_777_216:
        return False
    return host.rstrip(".") != canonical
