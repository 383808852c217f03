"""API keys verified from a snapshot of the store, without touching it on the request path.

A worker loads every active key -- its HMAC under the pepper, mapped to the principal it
proves -- from the store in a thread when the first verifier starts, and its store poller
(``bastion.state.poller``, shared with the certificate map and the consumer plans) reads the
store's generation counter about every second: a change (a key created, revoked or rotated,
a consumer changed) loads the snapshot again, so a revocation is honoured within a second.
Every route shares that one snapshot (``services.shared("apikeys:" + store url)``).

Verifying a key is then a checksum test (a mistyped or made-up key is refused without
hashing), one HMAC and one dictionary lookup, and an expiry test: a few microseconds,
synchronous. When the snapshot has never loaded, or the store has not answered for longer
than ``max_staleness``, every key is refused with 503: revocations could be missed, so
the gateway fails closed rather than trust what it last knew.

When a key was last used is noted in memory and written to the store in batches, off the
request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from bastion.stages.auth import keyformat
from bastion.stages.auth.methods import AuthFailure, Verdict
from bastion.state.poller import StorePoller, store_poller
from bastion.types import Principal

if TYPE_CHECKING:
    from bastion.services import Clock, Services
    from bastion.store import Store
    from bastion.store.keys import ActiveKey

log = logging.getLogger("bastion.auth.apikey")

#: Seconds between two writes of last-use times.
LAST_USED_FLUSH_INTERVAL: Final = 10.0
#: Default seconds a snapshot is trusted without the store answering: beyond, 503.
DEFAULT_MAX_STALENESS: Final = 30.0
#: Most key hashes a verifier remembers (emptied when full).
HASH_CACHE_SIZE: Final = 4096

#: The failures a key can get (built once: the request path allocates nothing to refuse).
STORE_UNAVAILABLE: Final = AuthFailure("auth.store_unavailable", "invalid_token", 503)
MALFORMED: Final = AuthFailure("auth.malformed")
KEY_UNKNOWN: Final = AuthFailure("auth.key_unknown")
KEY_EXPIRED: Final = AuthFailure("auth.key_expired")


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """A usable key in the snapshot: whom it proves, and until when (wall clock, seconds)."""

    principal: Principal
    expires_at: float


def _entry(active: ActiveKey) -> tuple[bytes, KeyEntry]:
    principal = Principal(
        consumer_id=active.consumer_id,
        consumer_name=active.consumer_name,
        credential_id=active.key_id,
        scopes=frozenset(active.scopes),
        roles=frozenset(active.roles),
    )
    expires = math.inf if active.expires_at is None else active.expires_at.timestamp()
    return active.hash, KeyEntry(principal, expires)


class KeySnapshot:
    """The worker's view of the store's active keys, kept current by the worker's
    :class:`~bastion.state.poller.StorePoller` (a :class:`~bastion.state.poller.StoreView`).

    ``entries``, ``hasher`` and ``loaded_at`` are replaced whole, never changed in place,
    so a verification on the event loop always sees one consistent snapshot.
    """

    what = "API keys"
    when_unread = "refused with 503 once older than their staleness limit"

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        #: The clock's readings as plain callables (read on every verification).
        self.monotonic, self.wall = clock.readers()
        self.entries: dict[bytes, KeyEntry] = {}
        self.hasher: keyformat.KeyHasher | None = None
        #: Monotonic time the store last answered (-inf: never).
        self.loaded_at = -math.inf
        #: The poller that keeps it current, once started.
        self.poller: StorePoller | None = None
        #: Key id -> wall time of its last use since the last flush.
        self.used: dict[str, float] = {}
        self._started: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None

    async def start(self, poller: StorePoller) -> None:
        """Load the keys once (every verifier's start waits for the same first load), then
        follow the store with ``poller``. A store that cannot be read leaves the snapshot
        empty and failing closed until it can; the worker still starts."""
        if self._started is None:
            self.poller = poller
            self._started = asyncio.get_running_loop().create_task(poller.attach(self))
            self._flusher = asyncio.get_running_loop().create_task(self._flush_every())
        await asyncio.shield(self._started)

    def load(self, store: Store) -> Callable[[], None]:
        """In the poller's thread: the active keys; swapped in on the event loop."""
        from bastion.store import keys

        with store.read() as session:
            active = keys.active(session)
        hasher = self.hasher if self.hasher is not None else keyformat.KeyHasher(store.pepper)
        entries = dict(_entry(a) for a in active)

        def commit() -> None:
            self.hasher, self.entries = hasher, entries
            log.info("API keys: %d active key(s) loaded", len(entries))

        return commit

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(LAST_USED_FLUSH_INTERVAL)
            await self.flush_last_used()

    async def flush_last_used(self) -> None:
        """Write the last-use times noted since the previous flush (in a thread)."""
        if not self.used:
            return
        used, self.used = self.used, {}
        from bastion.store import keys

        stamps = {key_id: datetime.fromtimestamp(t, UTC) for key_id, t in used.items()}

        def write() -> None:
            with self.store.write() as session:
                keys.record_last_used(session, stamps)

        try:
            await asyncio.to_thread(write)
        except Exception as exc:  # a lost batch of last-use times is not worth failing for
            log.warning("API keys: last-use times could not be written to %s: %s", self.store.shown, exc)

    async def aclose(self) -> None:
        """Stop flushing and write the last-use times still held (the worker's shutdown;
        the poller is the worker's too, closed with it)."""
        for task in (self._flusher, self._started):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.flush_last_used()


class ApiKeyVerifier:
    """Verifies ``bst_…`` API keys against the worker's shared snapshot of the store.

    Built from settings without I/O (``bastion check`` builds it too); :meth:`start` takes
    the store from the worker's services.
    """

    def __init__(self, max_staleness: float = DEFAULT_MAX_STALENESS) -> None:
        if not max_staleness > 0:
            raise ValueError("max_staleness must be positive")
        self.max_staleness = max_staleness
        self.snapshot: KeySnapshot | None = None
        #: The HMACs of well-formed keys presented before, keyed by each key's BLAKE2s (the
        #: cache holds no key, as the JWT cache holds no token): a key presented again costs
        #: one hash instead of its checksum and the HMAC's two SHA-256 (callgrind: ~12,000
        #: instructions less per request). BLAKE2s rather than SHA-256 for this key: as
        #: collision-resistant, and CPython's own code, not OpenSSL's, whose per-object set-up
        #: made a SHA-256 of a key cost ~2,000 instructions more. Valid for the hasher that
        #: made them.
        self._hashes: dict[bytes, bytes] = {}
        self._hashed_by: keyformat.KeyHasher | None = None

    async def start(self, services: Services) -> None:
        store = services.store
        clock = services.clock
        self.snapshot = services.shared("apikeys:" + store.url, lambda: KeySnapshot(store, clock))
        await self.snapshot.start(store_poller(services))

    async def close(self) -> None:
        # The snapshot is the worker's (shared by every route, kept across reloads): the
        # services close it.
        self.snapshot = None

    def verify(self, credential: str) -> Verdict:
        snapshot = self.snapshot
        if snapshot is None:
            return STORE_UNAVAILABLE
        hasher = snapshot.hasher
        if hasher is None or snapshot.monotonic() - snapshot.loaded_at > self.max_staleness:
            return STORE_UNAVAILABLE if keyformat.is_valid(credential) else MALFORMED
        digest = self._key_hash(credential, hasher)
        if digest is None:
            return MALFORMED
        entry = snapshot.entries.get(digest)
        if entry is None:
            return KEY_UNKNOWN
        now = snapshot.wall()
        if now >= entry.expires_at:
            return KEY_EXPIRED
        principal = entry.principal
        snapshot.used[principal.credential_id] = now
        return principal

    def _key_hash(self, credential: str, hasher: keyformat.KeyHasher) -> bytes | None:
        """The key's HMAC under the pepper, from the cache when it was presented before;
        ``None`` for a malformed key (refused without hashing)."""
        hashes = self._hashes
        if self._hashed_by is not hasher:  # a new snapshot's pepper: start again
            hashes.clear()
            self._hashed_by = hasher
        seen = hashlib.blake2s(credential.encode()).digest()
        digest = hashes.get(seen)
        if digest is None:
            if not keyformat.is_valid(credential):
                return None
            digest = hasher(credential)
            if len(hashes) >= HASH_CACHE_SIZE:
                hashes.clear()  # bounded: a flood of new keys costs hashing, never memory
            hashes[seen] = digest
        return digest
