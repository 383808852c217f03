"""GCRA or a sliding window: what each costs and what each admits, measured.

    python bench/ratelimit_algorithms.py [--calls 20000] [--limit 5]

For each algorithm, one limit of ``--limit`` per 10 s (the stage's own script and
arguments, :mod:`bastion.stages.ratelimit.gcra`):

- **admitted in one window**: a client hammering every 50 ms for 60 s of script time
  (time is given to the script, so this is exact, not a timing): the most requests
  admitted in any 10-s interval, and in all;
- **redis-server CPU per call**: ``--calls`` calls on a fresh ``redis-server`` (free port,
  no persistence), over 100 keys, half of them refused; Redis's own ``usec_per_call`` of
  ``EVALSHA`` from ``INFO commandstats`` (the server's CPU, not the client's);
- **memory backend µs per call**: the in-process copy, ``--calls`` calls, process CPU time.

Prints only; docs/ratelimit.md quotes it.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis

from bastion.stages.ratelimit.gcra import GCRA, LIMITS, interval_us, window_us
from bastion.state import MemoryBackend, Script, StateBackend
from bastion.state.redis import RedisBackend
from proxybench.procs import free_port

SECOND = 1_000_000
WINDOW = 10.0


def numbers(algorithm: str, limit: int) -> tuple[Script, list[int]]:
    """The script and the two numbers the stage gives it for one limit per WINDOW."""
    if algorithm == "sliding-window":
        return LIMITS, [-window_us(WINDOW), limit]
    t = interval_us(limit, WINDOW)
    return GCRA, [t, (limit - 1) * t]


async def admitted(state: StateBackend, algorithm: str, limit: int) -> tuple[int, int]:
    """The most admitted in any WINDOW, and in all, hammering every 50 ms for 60 s."""
    script, args = numbers(algorithm, limit)
    times = []
    for step in range(0, 60 * SECOND, SECOND // 20):
        answer = await state.run(script, ["hammer-" + algorithm], [10**9 + step, *args])
        if isinstance(answer, list) and answer[0] == 1:
            times.append(step)
    window = int(WINDOW * SECOND)
    most = max(sum(1 for t in times if start <= t < start + window) for start in range(0, 60 * SECOND, SECOND // 20))
    return most, len(times)


async def calls(state: StateBackend, algorithm: str, limit: int, n: int) -> None:
    script, args = numbers(algorithm, limit)
    for i in range(n):
        # 100 keys, each hit every 100 calls, 2 ms apart: about half of the calls refused.
        await state.run(script, [f"k{i % 100}"], [10**9 + i * 2_000, *args])


def redis_usec_per_call(port: int) -> float:
    """redis-server's own CPU µs per EVALSHA, from INFO commandstats."""
    stats = redis.Redis(host="127.0.0.1", port=port).info("commandstats")
    return float(stats["cmdstat_evalsha"]["usec_per_call"])


def redis_server() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


async def measure(algorithm: str, args: argparse.Namespace) -> str:
    memory = MemoryBackend(lambda: 1000.0)
    most, total = await admitted(memory, algorithm, args.limit)
    await calls(memory, algorithm, args.limit, 1000)  # warm
    started = time.process_time()
    await calls(MemoryBackend(lambda: 1000.0), algorithm, args.limit, args.calls)
    memory_us = (time.process_time() - started) * 1e6 / args.calls
    proc, port = redis_server()
    try:
        backend = RedisBackend(f"redis://127.0.0.1:{port}/0", timeout=5)
        try:
            await calls(backend, algorithm, args.limit, args.calls)
        finally:
            await backend.close()
        server_us = redis_usec_per_call(port)
    finally:
        proc.terminate()
        proc.wait(10)
    return (f"{algorithm:>15}: at most {most} admitted in any {WINDOW:g} s ({total} in 60 s); "
            f"redis-server {server_us:.2f} µs/call; memory backend {memory_us:.1f} µs/call")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/ratelimit_algorithms.py", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--limit", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"one limit of {args.limit} per {WINDOW:g} s")
    for algorithm in ("gcra", "sliding-window"):
        print(asyncio.run(measure(algorithm, args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
