"""The ``concurrency`` stage's hook, and the record sink that ends what it counted.

A request is counted when its head passes this stage and uncounted when its exchange's
record is complete (the record sinks see every exchange exactly once, however it ended:
answered, refused later, cut, or failed), so a client that disconnects mid-request never
leaves a slot taken. The counts are per worker process and live for the process, not for
one configuration: a request that began before a reload is uncounted after it.
"""

from __future__ import annotations

from bastion.pipeline.stage import HeadStage, RouteInfo
from bastion.stages.concurrency.config import ConcurrencyConfig
from bastion.types import Block, Exchange, ExchangeRecord

#: The fact a counted request carries (its place among its consumer's requests in flight).
FACT = "concurrency"
REASON = "concurrency.exceeded"

#: This process's requests in flight by consumer id (only consumers with some).
IN_FLIGHT: dict[str, int] = {}


class ConcurrencyStage(HeadStage):
    """Refuses a consumer's request while it has ``max_in_flight`` others in flight."""

    def __init__(self, config: ConcurrencyConfig) -> None:
        super().__init__("concurrency", config)
        self._max = config.max_in_flight
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

    def on_request_head(self, exchange: Exchange) -> Block | None:
        principal = exchange.principal
        if principal is None:
            return None  # nobody to count against (a public route)
        consumer = principal.consumer_id
        count = IN_FLIGHT.get(consumer, 0)
        if count >= self._max:
            return self._refusal
        IN_FLIGHT[consumer] = count + 1
        exchange.facts[FACT] = count + 1
        return None


class ReleaseInFlight:
    """The record sink that uncounts a request the stage counted, once its exchange ended."""

    name = "concurrency"

    def __call__(self, record: ExchangeRecord) -> None:
        consumer = record.consumer
        if consumer is None or FACT not in record.facts:
            return
        left = IN_FLIGHT.get(consumer, 0) - 1
        if left > 0:
            IN_FLIGHT[consumer] = left
        else:
            IN_FLIGHT.pop(consumer, None)
