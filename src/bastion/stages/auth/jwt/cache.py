"""The verified-token cache: a token's signature is checked once, then it is a dictionary hit.

Entries are keyed by what the cache's owner chooses (the JWT verifier: the token itself, or
the BLAKE2s of a long one), bounded in number (the oldest entry goes first when full), and
dropped when their token expires. An
entry remembers which key set verified it: when that set changes (a key rotated out of a
JWKS), the entry no longer counts and the token is verified again against the new keys.
Revocation is not cached: the verifier checks the token's ``jti`` on every hit.
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most ``size`` values with an expiry each (wall-clock seconds); oldest out first."""

    __slots__ = ("_entries", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K, now: float) -> V | None:
        """The live value under ``key`` (an expired one is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, value: V, expires: float) -> None:
        if self.size <= 0:
            return
        entries = self._entries
        if key not in entries and len(entries) >= self.size:
            # Insertion order is age: drop the oldest (first) entry. Cheaper than a true LRU
            # on every hit, and a token evicted early is only verified once more.
            del entries[next(iter(entries))]
        entries[key] = (expires, value)

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
