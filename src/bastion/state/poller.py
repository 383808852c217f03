"""One poll of the store per worker, for every view of it the data plane keeps.

The API key snapshot (``stages/auth/apikey.py``), the certificate map (``stages/auth/mtls.py``)
and the consumers' plans (``stages/ratelimit/plans.py``) are views of the store that requests
read without touching it. Each must follow it: load once when the worker starts, notice a
change (the store's generation counter, bumped by every write the data plane must see) within
about a second, say so when the store stops answering, and know how old its data is so that
a verifier can fail closed (503) past its limit.

:class:`StorePoller` does that once per worker and store (``services.shared``): every
``interval`` it reads the generation counter in a thread and, when it moved, has every
attached view load itself again in that same thread, then applies what they loaded on the
event loop, all at once. A view holds the poller (composition, not a base class: ``apikey.py``
is compiled with mypyc and the others are not) and implements :class:`StoreView`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from bastion.services import Clock, Services
    from bastion.store import Store

log = logging.getLogger("bastion.store.poll")

#: Seconds between two polls of the store's generation counter.
REFRESH_INTERVAL: Final = 1.0


class StoreView(Protocol):
    """What the poller keeps current: a view of the store the request path reads."""

    #: What it holds, for the log ("API keys").
    what: str
    #: What requests get while the store cannot be read, for the log ("refused with 503 once
    #: older than their limit").
    when_unread: str
    #: Monotonic time the store last answered for this view (-inf: never loaded).
    loaded_at: float

    def load(self, store: Store) -> Callable[[], None]:
        """In a thread: read the store; what to apply on the event loop (swap the data in)."""
        ...


class StorePoller:
    """The worker's poll of one store, shared by every view of it."""

    def __init__(self, store: Store, clock: Clock, interval: float = REFRESH_INTERVAL) -> None:
        self.store = store
        self.clock = clock
        self.interval = interval
        #: The generation the views were last loaded at (-1: load them whatever it is).
        self.generation = -1
        #: Polls that failed in a row (for tests and the log).
        self.failures = 0
        self._views: list[StoreView] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def attach(self, view: StoreView) -> None:
        """Load ``view`` now (with the others: one consistent generation) and keep it
        current from then on. A store that cannot be read leaves it never loaded (its
        verifier fails closed) until a later poll can."""
        async with self._lock:
            if not any(v is view for v in self._views):
                self._views.append(view)
                self.generation = -1  # the new view has nothing yet: load at whatever generation
        await self.refresh()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def refresh(self) -> None:
        """Ask the store whether anything changed, and reload every view if so."""
        async with self._lock:
            views = tuple(self._views)
            try:
                loaded = await asyncio.to_thread(self._load_if_changed, self.generation, views)
            except Exception as exc:
                self.failures += 1
                if self.failures == 1 or self.failures % 60 == 0:
                    log.error(
                        "the store %s cannot be read (%s); %s",
                        self.store.shown,
                        (str(exc).strip().splitlines() or [type(exc).__name__])[0],  # not the SQL that failed
                        "; ".join(f"{v.what}: {v.when_unread}" for v in views),
                    )
                return
            if loaded is not None:
                self.generation, commits = loaded
                for commit in commits:
                    commit()
            if self.failures:
                log.warning("the store %s answers again", self.store.shown)
            self.failures = 0
            now = self.clock.monotonic()
            for view in views:
                view.loaded_at = now

    def _load_if_changed(
        self, known: int, views: Sequence[StoreView]
    ) -> tuple[int, list[Callable[[], None]]] | None:
        """In a thread: each view's load, or ``None`` when the generation is still ``known``."""
        generation = self.store.generation()
        if generation == known:
            return None
        # The counter is read first: a write after it bumps it again, and the next poll
        # sees that, so no view is older than the generation it is filed under.
        return generation, [view.load(self.store) for view in views]

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.refresh()

    async def aclose(self) -> None:
        """Stop polling (the worker's shutdown)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def store_poller(services: Services) -> StorePoller:
    """The worker's poller of its store (made on first ask, closed with the worker)."""
    store, clock = services.store, services.clock
    return services.shared("store-poller:" + store.url, lambda: StorePoller(store, clock))


__all__ = ["REFRESH_INTERVAL", "StorePoller", "StoreView", "store_poller"]
