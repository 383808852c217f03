"""The ``blocklist`` stage's hooks: a blocked client IP refused at the head, a blocked
consumer or credential once the request is signed in.

A block is a key in the state backend (``block:<kind>:<value>``, holding the detector's
name) that a detector with ``action: block`` sets with its TTL (see
:mod:`bastion.detect.sink`). Every worker reads it through one cache shared by its
routes, an answer (blocked or not) kept ``CACHE_SECONDS``: a block set anywhere is
enforced by every instance sharing the backend within a second, and a request costs at
most one state lookup per key it checks, and usually none.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from bastion.pipeline.stage import HeadStage, RequestStage, RouteInfo
from bastion.stages.blocklist.config import BlocklistConfig
from bastion.types import Block, Exchange

if TYPE_CHECKING:
    from bastion.services import Services
    from bastion.state.interface import StateBackend

#: How long one worker reuses an answer of the state backend (seconds): with the time a
#: lookup takes, a new block is enforced everywhere within a second.
CACHE_SECONDS = 0.5
#: Most answers a worker keeps; past it the cache starts again (many client IPs cannot grow it).
CACHE_ENTRIES = 100_000


def block_key(kind: str, value: str) -> str:
    """The state key of a block of ``value`` (an IP, a consumer id, a credential id)."""
    return f"block:{kind}:{value}"


class BlockCache:
    """The worker's view of the block list: key -> (when read, the blocking detector or "")."""

    def __init__(self, state: StateBackend) -> None:
        self._state = state
        self._entries: dict[str, tuple[float, str]] = {}

    def lookup(self, key: str, now: float) -> str | Awaitable[str]:
        """The detector blocking ``key`` ("" when none), at once when known, else an awaitable."""
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < CACHE_SECONDS:
            return entry[1]
        return self._fetch(key, now)

    async def _fetch(self, key: str, now: float) -> str:
        value = await self._state.get(key)
        detector = value.decode() if value else ""
        entries = self._entries
        if len(entries) >= CACHE_ENTRIES:
            entries.clear()
        entries[key] = (now, detector)
        return detector


class BlocklistStage(HeadStage, RequestStage):
    """Refuses what a detector blocked: the client IP at the head, the principal after it."""

    uses_state = True

    def __init__(self, config: BlocklistConfig) -> None:
        super().__init__("blocklist", config)
        self._cache: BlockCache | None = None
        self._services: Services | None = None
        self._refusals: dict[str, Block] = {}

    @classmethod
    def from_config(cls, config: BlocklistConfig, route: RouteInfo | None = None) -> BlocklistStage:
        return cls(config)

    async def start(self, services: Services) -> None:
        self._services = services
        self._cache = services.shared("blocklist", lambda: BlockCache(services.state))

    def on_request_head(self, exchange: Exchange) -> Block | Awaitable[Block | None] | None:
        return self._check(block_key("ip", exchange.request.client_ip))

    def on_request(self, exchange: Exchange) -> Block | Awaitable[Block | None] | None:
        principal = exchange.principal
        if principal is None:
            return None
        if principal.credential_id:
            found = self._check(block_key("credential", principal.credential_id))
            if found is not None:
                return found if isinstance(found, Block) else self._then_consumer(found, principal.consumer_id)
        return self._check(block_key("consumer", principal.consumer_id))

    async def _then_consumer(self, pending: Awaitable[Block | None], consumer: str) -> Block | None:
        refused = await pending
        if refused is not None:
            return refused
        then = self._check(block_key("consumer", consumer))
        if then is None or isinstance(then, Block):
            return then
        return await then

    def _check(self, key: str) -> Block | Awaitable[Block | None] | None:
        cache = self._cache
        services = self._services
        if cache is None or services is None:
            raise RuntimeError("the blocklist stage serves before it was started")
        found = cache.lookup(key, services.clock.monotonic())
        if isinstance(found, str):
            return self._refusal(found) if found else None
        return self._after(found)

    async def _after(self, pending: Awaitable[str]) -> Block | None:
        detector = await pending
        return self._refusal(detector) if detector else None

    def _refusal(self, detector: str) -> Block:
        block = self._refusals.get(detector)
        if block is None:
            block = self._refusals[detector] = Block(
                403,
                "Forbidden",
                "This client is blocked for a while after suspicious activity.",
                f"blocked.{detector}",
            )
        return block
