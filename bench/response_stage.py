"""Per-response cost of the ``response`` stage, in process, against no stage, same run.

    python bench/response_stage.py            # 1 KB and 100 KB JSON responses
    python bench/response_stage.py --quick    # a few iterations: checks that it works

For each body size, the chain's response phase (``Chain.response``) on a fresh response
whose body is that JSON document, for:

- ``none``: a chain with no stage (the baseline);
- ``declared``: the response stage on an operation whose schema declares every property
  the body has (the usual case: parsed, walked, nothing removed, not re-serialised);
- ``filtered``: the same schema with every object of the body carrying one undeclared
  property (walked, one removal per object, re-serialised);
- ``names``: no schema (a hand-declared route): only the ``never_return`` names, and none
  in the body (a byte search, no parse).

The body is an array of records ``{"id", "name", "email", "tags": [...], "address": {...}}``
repeated to the size. Each figure is the minimum over REPEATS runs of NUMBER calls (the
median beside it), in microseconds per response, with the ratio to ``none``; the stage is
built from its settings as the loader builds it. Nothing touches a socket: the proxy's own
buffering and the client's bytes are the same with and without the stage, and are measured
by ``bench/run.py`` (the lead's throughput run).
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from collections.abc import Callable
from typing import Any

import orjson

from bastion.pipeline.chain import Chain
from bastion.pipeline.stage import RouteInfo, Stage
from bastion.stages.response import ResponseConfig, ResponseFilterStage
from bastion.types import Exchange, Request, Response

REPEATS = 7
SIZES = {"1 KB": 1024, "100 KB": 100 * 1024}

RECORD_SCHEMA: dict[str, Any] = {"type": "object", "properties": {
    "id": {"type": "integer"}, "name": {"type": "string"}, "email": {"type": "string"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}},
}}
OPERATION: dict[str, Any] = {"responses": {"200": {"description": "ok", "content": {"application/json": {
    "schema": {"type": "array", "items": RECORD_SCHEMA}}}}}}


def record(i: int, extra: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": i, "name": f"user {i}", "email": f"user{i}@example.com", "tags": ["a", "b"],
                           "address": {"street": f"{i} Main Street", "city": "Oslo"}}
    if extra:
        out["internal_score"] = i
        out["address"]["geo_shard"] = "eu-3"
    return out


def body(size: int, extra: bool) -> bytes:
    """A JSON array of records, about ``size`` bytes."""
    records: list[dict[str, Any]] = []
    while len(orjson.dumps(records)) < size:
        records.append(record(len(records), extra))
    return orjson.dumps(records)


def stage(with_operation: bool) -> Stage:
    route = RouteInfo("bench", "bench", "/users", frozenset({"GET"}), True, OPERATION if with_operation else None,
                      {"openapi": "3.1.0", "paths": {}})
    return ResponseFilterStage.from_config(ResponseConfig(), route)


def one_call(chain: Chain, raw: bytes) -> Callable[[], object]:
    request = Request("GET", "/users", "/users", "", [("host", "api.bench")])

    def run() -> object:
        exchange = Exchange(request, "bench-1")
        exchange.response = Response(200, [("content-type", "application/json"), ("content-length", str(len(raw)))],
                                     raw)
        return chain.response(exchange)

    return run


def measure(run: Callable[[], object], number: int, repeats: int) -> tuple[float, float]:
    """(minimum, median) microseconds per call."""
    times = [t / number * 1e6 for t in timeit.repeat(run, number=number, repeat=repeats)]
    return min(times), statistics.median(times)


def scenarios(size: int) -> dict[str, tuple[Chain, bytes]]:
    clean, leaky = body(size, False), body(size, True)
    return {
        "none": (Chain([]), clean),
        "declared": (Chain([stage(True)]), clean),
        "filtered": (Chain([stage(True)]), leaky),
        "names": (Chain([stage(False)]), clean),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few iterations: check that it works")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else REPEATS
    print(f"{'body':>7} {'scenario':>9} {'min us':>10} {'median us':>10} {'vs none':>8}")
    for label, size in SIZES.items():
        number = 3 if args.quick else max(20, 200_000 // size)
        base = 0.0
        for name, (chain, raw) in scenarios(size).items():
            low, mid = measure(one_call(chain, raw), number, repeats)
            base = base or low
            print(f"{label:>7} {name:>9} {low:10.1f} {mid:10.1f} {low / base:7.1f}x")


if __name__ == "__main__":
    main()
