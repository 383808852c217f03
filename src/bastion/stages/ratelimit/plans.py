"""Which plan each consumer is on: a per-worker snapshot of the store's consumers.

Quotas and plan rate limits are looked up per request by the signed-in consumer's name, so
the lookup is a dictionary read on the event loop. The snapshot is loaded in a thread when
the first stage with plans starts, then polled: the store's generation counter (bumped by
every consumer written, declared ones included) says when to load it again, so a
``bastion consumers create --plan pro`` reaches every worker within :data:`REFRESH_SECONDS`.

A store that cannot be read leaves the last snapshot in place (and logs why); until the first
load succeeds no consumer has a plan, so only the routes' own limits apply.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bastion.services import Services
    from bastion.store.engine import Store

log = logging.getLogger("bastion.ratelimit")

#: Seconds between two looks at the store's generation counter.
REFRESH_SECONDS = 2.0
#: The key of the worker's book in ``services.shared``.
SHARED_KEY = "ratelimit:plans"


class PlanBook:
    """Consumer name -> plan name, for every consumer of the store that has a plan."""

    def __init__(self, store: Store) -> None:
        self.store = store
        #: Replaced whole, never changed in place.
        self.plans: dict[str, str] = {}
        self.generation = -1
        self.loaded_at = -math.inf
        self._started: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None

    def plan_of(self, consumer: str) -> str | None:
        return self.plans.get(consumer)

    async def start(self) -> None:
        """Load once (every stage's start waits for the same first load), then poll."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_task(self._first_load())
        await asyncio.shield(self._started)

    async def _first_load(self) -> None:
        await self.refresh()
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def refresh(self) -> None:
        try:
            loaded = await asyncio.to_thread(self._load_if_changed, self.generation)
        except Exception as exc:
            log.error(
                "plans: the store %s cannot be read (%s); consumers keep the plans last read",
                self.store.shown,
                (str(exc).strip().splitlines() or [type(exc).__name__])[0],
            )
            return
        if loaded is not None:
            self.generation, self.plans = loaded

    def _load_if_changed(self, known: int) -> tuple[int, dict[str, str]] | None:
        from bastion.store import consumers

        self.store.ready()
        generation = self.store.generation()
        if generation == known:
            return None
        with self.store.read() as session:
            return generation, {c.name: c.plan for c in consumers.list_all(session) if c.plan}

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            await self.refresh()

    async def aclose(self) -> None:
        for task in (self._poller, self._started):
            if task is not None and not task.done():
                task.cancel()


def plan_book(services: Services) -> PlanBook:
    """The worker's book (one per worker, kept across reloads)."""
    return services.shared(SHARED_KEY, lambda: PlanBook(services.store))


__all__ = ["REFRESH_SECONDS", "PlanBook", "plan_book"]
