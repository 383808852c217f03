"""Which plan each consumer is on: a per-worker snapshot of the store's consumers.

Quotas and plan rate limits are looked up per request by the signed-in consumer's name, so
the lookup is a dictionary read on the event loop. The snapshot is a view of the store kept
by the worker's one store poller (:mod:`bastion.state.poller`, which also keeps the API keys
and the certificate map): loaded in a thread when the first stage with plans starts, then
loaded again whenever the store's generation counter moves (every consumer written, declared
ones included), so a ``bastion consumers create --plan pro`` reaches every worker within
about :data:`~bastion.state.poller.REFRESH_INTERVAL`.

A store that cannot be read leaves the last snapshot in place (and the poller logs why);
until the first load succeeds no consumer has a plan, so only the routes' own limits apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from bastion.state.poller import store_poller

if TYPE_CHECKING:
    from bastion.services import Services
    from bastion.state.poller import StorePoller
    from bastion.store.engine import Store

#: The key of the worker's book in ``services.shared``.
SHARED_KEY = "ratelimit:plans"


class PlanBook:
    """Consumer name -> plan name, for every consumer of the store that has a plan (a
    :class:`~bastion.state.poller.StoreView`)."""

    what = "consumer plans"
    when_unread = "the plans last read still apply"

    def __init__(self) -> None:
        #: Replaced whole, never changed in place.
        self.plans: dict[str, str] = {}
        #: Monotonic time the store last answered (-inf: never).
        self.loaded_at = -math.inf
        self._started: asyncio.Task[None] | None = None

    def plan_of(self, consumer: str) -> str | None:
        return self.plans.get(consumer)

    async def start(self, poller: StorePoller) -> None:
        """Load once (every stage's start waits for the same first load), then follow the
        store with ``poller``."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_task(poller.attach(self))
        await asyncio.shield(self._started)

    def load(self, store: Store) -> Callable[[], None]:
        """In the poller's thread: who is on which plan; swapped in on the event loop."""
        from bastion.store import consumers

        with store.read() as session:
            plans = {c.name: c.plan for c in consumers.list_all(session) if c.plan}

        def commit() -> None:
            self.plans = plans

        return commit

    async def aclose(self) -> None:
        """Stop a first load still running (the poller is the worker's, closed with it)."""
        if self._started is not None:
            self._started.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._started


async def plan_book(services: Services) -> PlanBook:
    """The worker's book (one per worker, kept across reloads), loaded once and followed."""
    book = services.shared(SHARED_KEY, PlanBook)
    await book.start(store_poller(services))
    return book


__all__ = ["SHARED_KEY", "PlanBook", "plan_book"]
