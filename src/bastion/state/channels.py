"""The memory backend's publish/subscribe channels: a queue per subscriber, in this process.

Apart from :mod:`bastion.state.memory`, which is compiled with mypyc: the iterator here is an
async generator, which mypyc does not compile (and nothing here runs per request).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from bastion.state.interface import Subscription


class MemorySubscription(Subscription):
    """Messages published on one channel of a :class:`~bastion.state.memory.MemoryBackend`."""

    def __init__(self, hub: dict[str, set[MemorySubscription]], channel: str) -> None:
        self._hub = hub
        self._channel = channel
        # Unbounded: a publisher never blocks or drops (revocations must not be lost); a
        # subscriber that stops reading should close its subscription.
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        hub.setdefault(channel, set()).add(self)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            message = await self.queue.get()
            if message is None:
                return
            yield message

    async def close(self) -> None:
        listeners = self._hub.get(self._channel)
        if listeners is not None and self in listeners:
            listeners.discard(self)
            if not listeners:
                del self._hub[self._channel]
            self.queue.put_nowait(None)
