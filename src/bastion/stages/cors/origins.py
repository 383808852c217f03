"""Which origins a route's CORS policy allows, decided on each cross-origin request.

Allowed origins are exact (``https://app.example.com``, ``http://localhost:3000``) or
patterns with one leading wildcard (``https://*.example.com``: any subdomain of
example.com, at any depth, over https on the default port; never example.com itself).
Origins are compared lower-case, as browsers send them.
"""

from __future__ import annotations

import re

#: ``scheme://host[:port]`` as an Origin header (or a config entry) writes it.
ORIGIN = re.compile(r"^(https?)://([a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$")
_LABELS = re.compile(r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$")


class Origins:
    """An allow-list of origins, compiled once from the config."""

    __slots__ = ("any", "exact", "patterns")

    def __init__(self, entries: list[str]) -> None:
        self.any = "*" in entries
        self.exact = frozenset(e.lower() for e in entries if e != "*" and "*" not in e)
        patterns: list[tuple[str, str]] = []
        for entry in entries:
            if entry != "*" and "*" in entry:
                scheme, rest = entry.lower().split("://*", 1)
                patterns.append((scheme + "://", rest))
        #: (``https://``, ``.example.com[:port]``) pairs.
        self.patterns = tuple(patterns)

    def allows(self, origin: str) -> bool:
        """Whether ``origin`` (the Origin header's value, lower-cased) is on the list."""
        if self.any or origin in self.exact:
            return True
        for prefix, suffix in self.patterns:
            if origin.startswith(prefix) and origin.endswith(suffix):
                middle = origin[len(prefix) : len(origin) - len(suffix)]
                if middle and _LABELS.match(middle) is not None:
                    return True
        return False


def check_entry(entry: str) -> str | None:
    """Why ``entry`` is not an allowed-origin entry, or ``None`` when it is one."""
    if entry == "*":
        return None
    if entry.lower() == "null":
        return "'null' is the origin of sandboxed frames and local files, which any page can create; it is refused"
    if "*" in entry:
        scheme, sep, rest = entry.lower().partition("://*.")
        if not sep or "*" in rest or ORIGIN.match(f"{scheme}://{rest}") is None:
            return f"{entry!r}: a pattern is a scheme, '://*.', then a domain (https://*.example.com)"
        return None
    if ORIGIN.match(entry.lower()) is None:
        return f"{entry!r} is not an origin: scheme://host[:port], without a path (https://app.example.com)"
    return None
