"""Per-request cost of the ratelimit stage on the memory backend, in process.

    python bench/ratelimit_inprocess.py

A route's chain as a worker runs it -- head hooks, then response hooks -- over fresh
exchanges, once with no stage (the baseline) and once with the ``ratelimit`` stage built
from settings (one limit by client IP, and one of three limits), on the memory backend,
in the same run. The stage's cost is the difference: naming the keys, one GCRA script under
the backend's lock, the ``RateLimit`` fields on the answer. The limit is high enough that
every request is admitted (what nearly every request pays). Clients are spread over 1 000
addresses, so the table holds 1 000 keys per limit. Target (issue 15): at most 8 µs.

Times are CPU time of this process (the machine may be shared: wall time would count other
processes' turns). Whether the data plane (chain, types) is compiled is printed: the stage
itself is plain Python either way. A CPU calibration figure (``sum(range(1000))``) lets
numbers from different machines compare.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import statistics
import time
from typing import Any

from bastion.pipeline import chain as chain_module
from bastion.pipeline.chain import Chain, Pending
from bastion.pipeline.stage import RouteInfo, Stage
from bastion.services import Services, WorkerIdentity
from bastion.stages.ratelimit import RateLimitConfig, RateLimitStage
from bastion.state.memory import MemoryBackend
from bastion.types import Exchange, Request, Response

NUMBER = 20_000
REPEATS = 7
ADDRESSES = [f"10.0.{i // 250}.{i % 250}" for i in range(1_000)]
ROUTE = RouteInfo("bench", "bench", "/", frozenset({"GET"}), True)
SETTINGS: dict[str, dict[str, Any]] = {
    "one limit by IP": {"limit": 1_000_000_000, "window": "1h", "by": "ip"},
    "three limits": {"limits": [
        {"limit": 1_000_000_000, "window": "1s", "by": "ip"},
        {"limit": 1_000_000_000, "window": "1h", "by": "route"},
        {"limit": 1_000_000_000, "window": "1d", "by": "header:x-tenant"},
    ]},
}


async def per_request(chain: Chain, number: int) -> float:
    """Seconds per request for ``number`` requests through ``chain``'s head and response."""
    exchanges = []
    for i in range(number):
        request = Request("GET", "/x", "/x", "", [("host", "api.test"), ("x-tenant", "t1")],
                          client_ip=ADDRESSES[i % len(ADDRESSES)])
        exchanges.append(Exchange(request, f"r{i}", "bench", "bench"))
    start = time.process_time()  # CPU time: the machine may be shared
    for exchange in exchanges:
        # As the proxy runs them: the head hooks (awaiting one that waits), then the rest.
        head = chain.head(exchange)
        refused = await chain.finish_head(exchange, head) if isinstance(head, Pending) else head
        if refused is None:
            refused = await chain.run_request(exchange)
        if refused is not None:
            raise RuntimeError(f"the bench request was refused: {refused.status}")
        exchange.response = Response(200, [("content-type", "application/json")])
        await chain.run_response(exchange)
    elapsed = time.process_time() - start
    if chain.head_stages and exchanges[-1].response is not None and not exchanges[-1].response.header("ratelimit"):
        raise RuntimeError("the stage did not run: no RateLimit field on the answer")
    return elapsed / number


async def measure() -> dict[str, list[float]]:
    services = Services(MemoryBackend(), WorkerIdentity("bench", 0, 1, os.getpid()))
    chains: dict[str, Chain] = {"no stage": Chain([])}
    for name, settings in SETTINGS.items():
        stage: Stage | None = RateLimitStage.from_config(RateLimitConfig.model_validate(settings), ROUTE)
        assert stage is not None
        await stage.start(services)
        chains[name] = Chain([stage])
    runs: dict[str, list[float]] = {name: [] for name in chains}
    for _ in range(REPEATS):  # interleaved, so a slower moment of the machine hits every chain
        for name, chain in chains.items():
            runs[name].append(await per_request(chain, NUMBER) * 1e6)
    await services.close()
    return runs


def main() -> None:
    import timeit

    cpu = time.process_time
    calibration = min(timeit.repeat("sum(range(1000))", number=10_000, repeat=5, timer=cpu)) / 10_000 * 1e6
    compiled = inspect.getfile(chain_module).endswith(".so")
    runs = asyncio.run(measure())
    print(f"data plane {'compiled' if compiled else 'pure Python'}; calibration sum(range(1000)) = "
          f"{calibration:.1f} µs")
    base = min(runs["no stage"])
    for name, values in runs.items():
        extra = "" if name == "no stage" else f"; the stage: {min(values) - base:.2f} µs"
        print(f"{name + ':':<17} min {min(values):.2f} µs, median {statistics.median(values):.2f} µs "
              f"per request{extra}")


if __name__ == "__main__":
    main()
