"""The ``concurrency`` stage's hook, and the record sink that ends what it counted.

A request is counted when its head passes this stage and uncounted when its exchange's
record is complete (the record sinks see every exchange exactly once, however it ended:
answered, refused later, cut, or failed), so a client that disconnects mid-request never
leaves a slot taken. The counts live for the worker, not for one configuration: a request
that began before a reload is uncounted after it.

Where they live follows ``backends.state``. With Redis, in Redis (``leases.py``): one count
per consumer for every worker of every instance, each place a lease its worker renews, so a
worker that dies frees its places within a lease. With the memory backend, in this process
(a dictionary: no I/O on the request path); the stage then keeps state that is not shared,
so the supervisor refuses more than one worker, as it does for rate limits.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from bastion.pipeline.stage import HeadStage, RequestOutcome, RouteInfo
from bastion.stages.concurrency.config import ConcurrencyConfig
from bastion.stages.concurrency.leases import SharedInFlight, release_lease, shared_in_flight
from bastion.types import Block, Exchange, ExchangeRecord

if TYPE_CHECKING:
    from bastion.services import Services

#: The fact a counted request carries (its place among its consumer's requests in flight).
FACT = "concurrency"
REASON = "concurrency.exceeded"

#: This process's requests in flight by consumer id (only consumers with some).
IN_FLIGHT: dict[str, int] = {}


class ConcurrencyStage(HeadStage):
    """Refuses a consumer's request while it has ``max_in_flight`` others in flight."""

    #: Its counts must be the host's, not one worker's: refused on the memory backend with
    #: several workers (``services.check_backends``).
    uses_state = True

    def __init__(self, config: ConcurrencyConfig) -> None:
        super().__init__("concurrency", config)
        self._max = config.max_in_flight
        self._lease = config.lease
        #: With a shared backend: the worker's places in the shared counts.
        self._shared: SharedInFlight | None = None
        self._refusal = Block(
            429,
            "Too Many Requests",
            f"Too many requests of this client are in progress (at most {config.max_in_flight}); "
            "retry once one has been answered.",
            REASON,
            (("retry-after", "1"),),
        )

    @classmethod
    def from_config(cls, config: ConcurrencyConfig, route: RouteInfo | None = None) -> ConcurrencyStage:
        return cls(config)

    async def start(self, services: Services) -> None:
        if services.state.shared:
            self._shared = shared_in_flight(services, self._lease)

    def on_request_head(self, exchange: Exchange) -> RequestOutcome | Awaitable[RequestOutcome]:
        principal = exchange.principal
        if principal is None:
            return None  # nobody to count against (a public route)
        consumer = principal.consumer_id
        shared = self._shared
        if shared is not None:
            return self._take_shared(shared, exchange, consumer)
        count = IN_FLIGHT.get(consumer, 0)
        if count >= self._max:
            return self._refusal
        IN_FLIGHT[consumer] = count + 1
        exchange.facts[FACT] = count + 1
        return None

    async def _take_shared(self, shared: SharedInFlight, exchange: Exchange, consumer: str) -> RequestOutcome:
        taken = await shared.acquire(consumer, self._max, exchange.request_id)
        if not taken:
            return self._refusal
        exchange.facts[FACT] = taken
        return None


class ReleaseInFlight:
    """The record sink that uncounts a request the stage counted, once its exchange ended."""

    name = "concurrency"

    def __call__(self, record: ExchangeRecord) -> None:
        consumer = record.consumer
        if consumer is None:
            return
        # A place in a shared count, whether or not the stage had its answer (the client may
        # have left while it waited); else this process's count.
        if release_lease(record.request_id):
            return
        if FACT not in record.facts:
            return
        left = IN_FLIGHT.get(consumer, 0) - 1
        if left > 0:
            IN_FLIGHT[consumer] = left
        else:
            IN_FLIGHT.pop(consumer, None)
