"""Learned ownership: who created which object, remembered per worker and kept in the store.

For APIs whose objects carry no owner field, the operation that creates an object tells the
gateway its id (``learn_ownership``), and the gateway remembers the creator; requests of
other consumers for that object are then refused (``learned_owner``).

The request path never waits for a write: the response hook hands the new record to
:meth:`OwnershipLedger.remember`, which puts it in the worker's cache at once (the creator's
next request is decided without the store) and queues it for a background task that writes
batches to the repository in a thread. A read that misses the cache asks the repository in a
thread; a repository that fails makes the request fail closed (503 through the stage's
``failure_mode``), never pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Sequence
from typing import Protocol

from bastion.errors import DependencyUnavailable

log = logging.getLogger("bastion.access")

#: The key of the worker's ledger in :meth:`bastion.services.Services.shared`; whoever opens the
#: durable store for the worker registers it there (tests register one over memory).
LEDGER_KEY = "access.ownership"
#: Records cached per worker (the cache is emptied when full; the store keeps them all).
CACHE_SIZE = 100_000
#: Records waiting to be written at most; beyond that the oldest are dropped and logged (the
#: creator's own cache entry stays, so only other workers would miss them).
MAX_PENDING = 100_000
#: Seconds between attempts while the repository fails.
RETRY_SECONDS = 1.0

#: Longest object id remembered (the store's column); a longer one is never learned.
MAX_OBJECT_ID = 255
#: Longest consumer id the store's column holds; a longer one (a token's ``sub`` can be) is
#: kept as a digest of that length.
MAX_CONSUMER_ID = 36

#: One ownership record: (key, object id, consumer key); the key is ``service/kind``.
Entry = tuple[str, str, str]


def consumer_key(consumer_id: str) -> str:
    """How a consumer is written in an ownership record: its id, or for an id longer than the
    store holds, ``sha256:`` and the start of its digest (same length, no collision in practice)."""
    if len(consumer_id) <= MAX_CONSUMER_ID:
        return consumer_id
    return "sha256:" + hashlib.sha256(consumer_id.encode()).hexdigest()[: MAX_CONSUMER_ID - 7]


class OwnershipRepository(Protocol):
    """Where ownership records live (the store's ``ownership`` table). Blocking calls: the
    ledger makes them in a thread, off the event loop."""

    def owner_of(self, key: str, object_id: str) -> str | None:
        """The consumer id that created ``object_id`` of ``key``, or ``None`` if unknown."""
        ...

    def record(self, entries: Sequence[Entry]) -> None:
        """Store ``entries``; an object already recorded keeps its first creator."""
        ...

    def close(self) -> None:
        """Release connections (the worker stops)."""
        ...


class MemoryOwnership:
    """A repository in memory: one process, forgotten at exit (tests, a single worker)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], str] = {}
        #: Set to make every call fail, as a store that is down would.
        self.down = False

    def owner_of(self, key: str, object_id: str) -> str | None:
        if self.down:
            raise ConnectionError("the ownership store is down")
        return self.rows.get((key, object_id))

    def record(self, entries: Sequence[Entry]) -> None:
        if self.down:
            raise ConnectionError("the ownership store is down")
        for key, object_id, consumer in entries:
            self.rows.setdefault((key, object_id), consumer)

    def close(self) -> None:
        return None


class OwnershipLedger:
    """The worker's view of ownership: a cache in front of a repository, and its writer."""

    def __init__(self, repository: OwnershipRepository) -> None:
        self.repository = repository
        self._cache: dict[tuple[str, str], str] = {}
        self._pending: list[Entry] = []
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None

    def cached(self, key: str, object_id: str) -> str | None:
        """The creator of ``object_id`` if this worker knows it already."""
        return self._cache.get((key, object_id))

    async def owner_of(self, key: str, object_id: str) -> str | None:
        """The creator of ``object_id``, from the cache or the repository;
        :class:`DependencyUnavailable` if the repository cannot answer."""
        found = self._cache.get((key, object_id))
        if found is not None:
            return found
        try:
            found = await asyncio.to_thread(self.repository.owner_of, key, object_id)
        except Exception as exc:
            raise DependencyUnavailable(f"the ownership store could not be read: {type(exc).__name__}") from exc
        if found is not None:
            self._put(key, object_id, found)
        return found

    def remember(self, key: str, object_id: str, consumer: str) -> None:
        """Record that ``consumer`` created ``object_id``: cached now, written soon. An object
        this worker already knows keeps its first creator."""
        if (key, object_id) in self._cache:
            return
        self._put(key, object_id, consumer)
        if len(self._pending) >= MAX_PENDING:
            log.error("ownership records are not being written; dropping the oldest")
            del self._pending[: MAX_PENDING // 10]
        self._pending.append((key, object_id, consumer))
        self._ensure_writer()
        if self._wake is not None:
            self._wake.set()

    def _put(self, key: str, object_id: str, consumer: str) -> None:
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[(key, object_id)] = consumer

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._wake = asyncio.Event()
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def _write_loop(self) -> None:
        wake = self._wake
        if wake is None:  # set with the task, just before it
            return
        while True:
            await wake.wait()
            wake.clear()
            if not await self.flush():
                await asyncio.sleep(RETRY_SECONDS)
                wake.set()

    async def flush(self) -> bool:
        """Write what is pending; tell whether it all went (on failure it stays pending)."""
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self.repository.record, batch)
            except Exception as exc:
                self._pending[:0] = batch
                log.warning("ownership records could not be written (%s); retrying", type(exc).__name__)
                return False
        return True

    async def aclose(self) -> None:
        """Write what is pending (once), then stop the writer; called with the worker's services."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        if self._pending and not await self.flush():
            log.error("%d ownership record(s) could not be written before the worker stopped", len(self._pending))
        self.repository.close()
