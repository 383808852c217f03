"""Bastion's workers with a bench-only stage that does one Redis command per request.

    python stategateway.py --config bastion.yaml --workers 2 --stage incr|none

Run with the Python of the Bastion install under test (it imports ``bastion``). Nothing
ships :class:`IncrStage` (it is not in the registry): like the tests' toy counting stage,
a loader adds it to every route, and this script starts the workers itself (what ``bastion
serve``'s supervisor does: one ``Worker`` per process, SO_REUSEPORT on one port), so the
load measures the real data plane plus exactly one state command per request.

``--stage none`` runs the same workers, same config (the Redis backend configured, never
used), without the stage: the difference in CPU per request is the Redis round trip.
The parent starts the workers, waits until each has said it listens, then writes
``<config>.ready``; SIGTERM stops them (each drains like a real worker).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path

STAGES = ("none", "incr")


def worker_main(config: str, index: int, workers: int, ready_fd: int, stage: str) -> int:
    import uvloop

    from bastion.config import LoadedConfig, load_config
    from bastion.logs import setup_logging
    from bastion.pipeline.stage import RequestOutcome, RequestStage, StageConfig
    from bastion.proxy.worker import Worker
    from bastion.services import Services, WorkerIdentity
    from bastion.types import Exchange

    class IncrStage(RequestStage):
        """One ``incr`` with a TTL (a rate limiter's counter: EVALSHA of a small script) per
        request, on one key; never refuses."""

        uses_state = True

        def __init__(self) -> None:
            super().__init__("bench_incr", StageConfig())
            self.services: Services | None = None

        async def start(self, services: Services) -> None:
            self.services = services

        def on_request(self, exchange: Exchange) -> RequestOutcome | Awaitable[RequestOutcome]:
            return self._count()

        async def _count(self) -> RequestOutcome:
            assert self.services is not None
            await self.services.state.incr("bench:count", ttl=3600)
            return None

    def load(path: str) -> LoadedConfig:
        loaded = load_config(path)
        if stage == "none":
            return loaded
        routes = tuple(replace(r, built=(*r.built, IncrStage())) for r in loaded.routes)
        return replace(loaded, routes=routes)

    setup_logging("warning")
    identity = WorkerIdentity("bench", index, workers, os.getpid())
    worker = Worker(config, ready_fd, identity=identity, load=load)
    uvloop.run(worker.run())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stategateway.py")
    parser.add_argument("--config", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stage", choices=STAGES, default="incr")
    parser.add_argument("--index", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.index is not None:
        return worker_main(args.config, args.index, args.workers, args.ready_fd, args.stage)

    children: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, lambda *_: [c.terminate() for c in children if c.poll() is None])
    readers = []
    for index in range(args.workers):
        read, write = os.pipe()
        children.append(subprocess.Popen(
            [sys.executable, __file__, "--config", args.config, "--workers", str(args.workers),
             "--stage", args.stage, "--index", str(index), "--ready-fd", str(write)],
            pass_fds=(write,),
        ))
        os.close(write)
        readers.append(read)
    for read in readers:
        if os.read(read, 1) != b"1":
            print("a worker exited before it listened", file=sys.stderr)
            for child in children:
                child.terminate()
            return 1
        os.close(read)
    Path(args.config + ".ready").write_text("ready\n")
    codes = [child.wait() for child in children]
    return max(codes)


if __name__ == "__main__":
    raise SystemExit(main())
