"""Instructions per request of the ratelimit stage's own hooks, in process (callgrind).

    python bench/ratelimit_instructions.py [--python .venv/bin/python] [--requests 2000]

The stage built from ``redis_roundtrip.py``'s two limits (by IP and global, never
refusing) on the memory backend, as the proxy runs it on a route where it is the only
response stage: ``Chain.head`` (the head hook: keys, the GCRA script, the decision), then
``Chain.fields`` (the ``RateLimit`` lines appended to the forwarded head). The same script
runs twice under ``valgrind --tool=callgrind``, with ``--requests`` exchanges and with none;
the difference of the totals, divided by ``--requests``, is what one request costs
(building its exchange included), free of start-up and of the machine's load. Needs
valgrind. Slow under load: two interpreter start-ups under callgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Run as the measured program: ``argv[1]`` exchanges through the stage's chain.
PROGRAM = """
import asyncio, os, sys
from bastion.pipeline.chain import Chain
from bastion.pipeline.stage import RouteInfo
from bastion.services import Services, WorkerIdentity
from bastion.stages.ratelimit import RateLimitConfig, RateLimitStage
from bastion.state.memory import MemoryBackend
from bastion.types import Exchange, Request

LIMITS = {"limits": [{"limit": 10**9, "window": "1h", "by": "ip"}, {"limit": 10**9, "window": "1d", "by": "global"}]}

async def main(count):
    services = Services(MemoryBackend(), WorkerIdentity("bench", 0, 1, os.getpid()))
    route = RouteInfo("bench", "bench", "/", frozenset({"GET"}), True)
    stage = RateLimitStage.from_config(RateLimitConfig.model_validate(LIMITS), route)
    await stage.start(services)
    chain = Chain([stage])
    for i in range(count):
        request = Request("GET", "/", "/", "", [("host", "bench")], client_ip="127.0.0.1")
        exchange = Exchange(request, f"r{i}", "bench", "bench")
        if chain.head(exchange) is not None or not chain.fields(exchange):
            raise SystemExit("the bench request was refused, or got no RateLimit fields")
    await services.close()

asyncio.run(main(int(sys.argv[1])))
"""


def total(python: Path, count: int, folder: Path) -> int:
    """The instructions the program executes with ``count`` exchanges."""
    out = folder / f"callgrind.{count}"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(python), "-c", PROGRAM,
                    str(count)], check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no totals in {out}")
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/ratelimit_instructions.py")
    parser.add_argument("--python", type=Path, default=ROOT / ".venv" / "bin" / "python")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bastion-ratelimit-") as tmp:
        empty = total(args.python, 0, Path(tmp))
        full = total(args.python, args.requests, Path(tmp))
    print(f"ratelimit stage (memory backend, two limits), head hook + fields: "
          f"{(full - empty) / args.requests:,.0f} instructions per request ({args.requests} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
