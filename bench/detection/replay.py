"""Replay a JSONL request corpus against a running gateway and report block rates.

    python bench/detection/replay.py --target 127.0.0.1:8080 [--corpus PATH ...] [--concurrency 8]

Each request is written as raw bytes to a fresh loopback connection (so malformed or
unusual requests reach the gateway exactly as in the corpus); a ``403`` status counts as
blocked, anything else (200, 404, ...) as passed. This is a correctness replay, not a
load test: concurrency is small and each request waits for its answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import BENIGN, GOTESTWAF, Sample, load, rate_table


async def send(host: str, port: int, sample: Sample, wait: float) -> int:
    """The status code the gateway answered ``sample`` with (0 if none)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait)
    try:
        writer.write(sample.to_wire())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), wait)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    parts = line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0


@dataclass
class ReplayResult:
    """Per category: one blocked flag per request; whether the category should be blocked."""

    results: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    expect: dict[str, bool] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    def rate(self, expect_block: bool) -> tuple[int, int]:
        """(requests, blocked) over every category with this expectation."""
        n = b = 0
        for category, blocked in self.results.items():
            if self.expect[category] == expect_block:
                n += len(blocked)
                b += sum(blocked)
        return n, b


async def replay(target: str, corpus: Path, concurrency: int, wait: float, verbose: bool) -> ReplayResult:
    """Send every request of ``corpus`` to ``target`` and print and return the block rates."""
    host, _, port = target.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        raise SystemExit("replay only targets a loopback address")
    samples = list(load(corpus))
    out = ReplayResult()
    results, expect, statuses = out.results, out.expect, out.statuses
    gate = asyncio.Semaphore(concurrency)

    async def one(sample: Sample) -> None:
        async with gate:
            try:
                status = await send(host.strip("[]"), int(port), sample, wait)
            except (TimeoutError, OSError):
                status = 0
        statuses[status] += 1
        blocked = status == 403
        results[sample.category].append(blocked)
        expect[sample.category] = sample.expect_block
        if verbose and blocked != sample.expect_block:
            print(f"{'MISS' if sample.expect_block else 'FP  '} {status} {sample.id}")

    await asyncio.gather(*(one(s) for s in samples))
    print(f"\n== {corpus.name} -> {target}  statuses: {dict(sorted(statuses.items()))}")
    print(rate_table(results, expect))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:8080", help="host:port of the gateway")
    parser.add_argument("--corpus", type=Path, action="append", help="JSONL corpus (repeatable)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("-v", "--verbose", action="store_true", help="list misses and false positives")
    args = parser.parse_args()
    corpora = args.corpus or [p for p in (GOTESTWAF, BENIGN) if p.exists()]
    for path in corpora:
        asyncio.run(replay(args.target, path, args.concurrency, args.timeout, args.verbose))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
